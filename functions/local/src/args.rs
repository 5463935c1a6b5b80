//! Command-line flags.

pub const USAGE: &str = "\
usage: relay-local [--demo | --no-demo] [--exit-after-demo]
       relay-local bootstrap [--prefix NAME] [--visibility-timeout SECS]

  --demo             run the demo (default when no credentials are configured)
  --no-demo          do not run the demo
  --exit-after-demo  stop once the demo delivery has been verified (exit 0), or failed (exit 1)
  -h, --help         this text

bootstrap creates the DynamoDB tables and SQS queues of template.yaml, named NAME-...
(default webhook-relay), through the AWS_ENDPOINT_URL* settings (LocalStack, moto), and
prints the variables that point relay-local at them. --visibility-timeout replaces the
queue's 180 s (for tests that restart the relay and want its unfinished messages back soon).

Configuration comes from environment variables; see the README.";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `None`: the default (demo when running on dev credentials).
    pub demo: Option<bool>,
    pub exit_after_demo: bool,
    pub help: bool,
    /// `bootstrap`: create the AWS resources with this name prefix, then exit.
    pub bootstrap: Option<String>,
    /// `bootstrap --visibility-timeout`: the queue's visibility timeout in seconds.
    pub visibility_timeout: Option<u64>,
}

impl Args {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "bootstrap" => parsed.bootstrap = Some("webhook-relay".into()),
                "--prefix" if parsed.bootstrap.is_some() => {
                    parsed.bootstrap = Some(args.next().ok_or("--prefix needs a name")?);
                }
                "--visibility-timeout" if parsed.bootstrap.is_some() => {
                    let secs = args.next().ok_or("--visibility-timeout needs a number of seconds")?;
                    parsed.visibility_timeout = Some(
                        secs.parse()
                            .ok()
                            .filter(|s| (1..=43_200).contains(s))
                            .ok_or("--visibility-timeout: 1 to 43200 seconds")?,
                    );
                }
                "--demo" => parsed.demo = Some(true),
                "--no-demo" => parsed.demo = Some(false),
                "--exit-after-demo" => {
                    parsed.exit_after_demo = true;
                    parsed.demo.get_or_insert(true);
                }
                "-h" | "--help" => parsed.help = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags() {
        assert_eq!(parse(&[]).unwrap(), Args::default());
        assert_eq!(parse(&["--no-demo"]).unwrap().demo, Some(false));
        let exit = parse(&["--exit-after-demo"]).unwrap();
        assert_eq!((exit.demo, exit.exit_after_demo), (Some(true), true));
        assert!(parse(&["--bogus"]).is_err());
        assert_eq!(parse(&["bootstrap"]).unwrap().bootstrap.as_deref(), Some("webhook-relay"));
        assert_eq!(parse(&["bootstrap", "--prefix", "dev"]).unwrap().bootstrap.as_deref(), Some("dev"));
        assert!(parse(&["--prefix", "dev"]).is_err());
        assert_eq!(parse(&["bootstrap", "--visibility-timeout", "5"]).unwrap().visibility_timeout, Some(5));
        assert!(parse(&["bootstrap", "--visibility-timeout", "0"]).is_err());
        assert!(parse(&["bootstrap", "--visibility-timeout", "soon"]).is_err());
        assert!(parse(&["--visibility-timeout", "5"]).is_err());
    }
}
