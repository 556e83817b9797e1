use clap::Parser;

fn main() -> std::process::ExitCode {
    caplab::cli::main(caplab::cli::Cli::parse())
}
