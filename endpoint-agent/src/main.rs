//! `dsreg-agent`: thin binary over the `dsreg_agent` library — parse the command line, run
//! it ([`dsreg_agent::app::main`]: dispatch, printing, the exit-code table).

use clap::Parser;

fn main() -> std::process::ExitCode {
    dsreg_agent::app::main(dsreg_agent::app::Cli::parse())
}
