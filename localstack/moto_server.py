"""moto's server, with each DynamoDB operation applied atomically, as DynamoDB applies them.

moto serves requests on threads and checks a condition expression (or a transaction's
conditions) in one step and writes in another, so two concurrent conditional writes of the
same item can both succeed. DynamoDB never allows that, and the relay's idempotency keys rely
on it (the contract test `concurrent_duplicates_create_one_event` caught moto letting two
inserts of one key through, about one run in fifteen). Here every public method of moto's
DynamoDB backend runs under one re-entrant lock; everything else is moto's own server.

    python moto_server.py -H 127.0.0.1 -p 5000
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_LOCK = threading.RLock()


def _atomic(method):
    @functools.wraps(method)
    def run(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    return run


for _name, _value in list(vars(DynamoDBBackend).items()):
    if callable(_value) and not _name.startswith("_"):
        setattr(DynamoDBBackend, _name, _atomic(_value))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
