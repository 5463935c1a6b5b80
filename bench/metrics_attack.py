"""Re-runs issue 15's metrics attack on a running relay-local (docs/performance.md): TOTAL
unauthenticated GETs of unique unmatched paths over 32 keep-alive connections; prints the
throughput of every 5,000 requests and the relay's RSS (from /proc/PID), then the size and
time of one metrics scrape and of /health.

    PORT=39123 target/release/relay-local --no-demo &
    python3 bench/metrics_attack.py 39123 $! 45000 /api/metrics 'X-Service-Token: dev-service-token'
"""
import asyncio, os, sys, time, uuid

PORT, PID, TOTAL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
SCRAPE, HEADER = sys.argv[4], sys.argv[5]
CONNS, WINDOW = 32, 5000

def rss_mb():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    chunked = False
    for line in head.split(b"\r\n"):
        low = line.lower()
        if low.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        if low.startswith(b"transfer-encoding:") and b"chunked" in low:
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size + 2)
        return head, body
    return head, await reader.readexactly(length)

async def worker(counter, stop):
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    while counter[0] < TOTAL:
        counter[0] += 1
        writer.write(f"GET /x/{uuid.uuid4().hex}/{counter[0]} HTTP/1.1\r\nHost: r\r\n\r\n".encode())
        await read_response(reader)
    writer.close()

async def one(path, header=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    extra = f"{header}\r\n" if header else ""
    started = time.perf_counter()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: r\r\n{extra}Connection: close\r\n\r\n".encode())
    head, body = await read_response(reader)
    took = time.perf_counter() - started
    writer.close()
    return head, body, took

async def main():
    counter = [0]
    print(f"rss before: {rss_mb():.1f} MB")
    _, _, h = await one("/health")
    print(f"/health before: {h*1000:.1f} ms")
    tasks = [asyncio.create_task(worker(counter, None)) for _ in range(CONNS)]
    last, t0 = 0, time.perf_counter()
    start = t0
    while any(not t.done() for t in tasks):
        await asyncio.sleep(0.05)
        if counter[0] - last >= WINDOW or all(t.done() for t in tasks):
            now = time.perf_counter()
            print(f"requests {counter[0]:6d}: {(counter[0]-last)/(now-t0):8.0f} req/s, rss {rss_mb():.1f} MB")
            last, t0 = counter[0], now
    print(f"total: {TOTAL/(time.perf_counter()-start):.0f} req/s")
    _, body, took = await one(SCRAPE, HEADER)
    print(f"scrape {SCRAPE}: {len(body)} bytes in {took*1000:.1f} ms")
    _, _, h = await one("/health")
    print(f"/health after: {h*1000:.1f} ms; rss after: {rss_mb():.1f} MB")

asyncio.run(main())
