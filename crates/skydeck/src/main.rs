//! `skydeck`: one binary for SkyPilot fleet metrics.
//!
//! `main` parses the command line, sets up logging and TLS, runs the command and maps the
//! outcome to an exit status: 0 all well, 1 ran but something failed (a collector, a sink),
//! 2 configuration or usage error.

mod cli;
mod config;
mod credentials;
mod duration;
mod sinks;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    // reqwest is built without a default TLS provider so only ring is compiled in; rustls
    // needs to be told which one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // One thread for the one-shot commands: the work is waiting on servers and child
    // processes, and a single thread keeps one malloc arena, which matters for the peak RSS of
    // a 5,000-job collection. The control plane serves many clients: a thread per core.
    let runtime = if cli.command.is_server() {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,skydeck=info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKYDECK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
