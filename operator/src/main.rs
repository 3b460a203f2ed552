//! `socketfleet-operator`: runs the controller, or prints the CRD with `crd`.

use clap::Parser;
use socketfleet_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { chart }) => {
            let yaml = if chart {
                socketfleet_operator::crd_chart_template()?
            } else {
                socketfleet_operator::crd_yaml()?
            };
            print!("{yaml}");
            Ok(())
        }
        None => {
            socketfleet_operator::telemetry::init(&cli.run.log_level, cli.run.log_format)?;
            socketfleet_operator::run(cli.run).await?;
            Ok(())
        }
    }
}
