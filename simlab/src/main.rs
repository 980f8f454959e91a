//! simlab: run chaos scenarios against the real Steer control plane on a
//! simulated clock and report what clients would have experienced.
//!
//! `simlab run SCENARIO.toml [--seed N] [--out DIR]` prints a summary,
//! writes `<name>.json` and `<name>.svg`, and exits 1 if an expectation in
//! the scenario fails (2 on a bad scenario file).

mod engine;
mod naive;
mod report;
mod scenario;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "simlab", version, about = "Chaos experiments for Steer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario.
    Run {
        scenario: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write the JSON report and SVG chart.
        #[arg(long, default_value = "target/simlab")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let Command::Run {
        scenario,
        seed,
        out,
    } = Cli::parse().command;
    match run(&scenario, seed, &out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("simlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(path: &std::path::Path, seed: Option<u64>, out: &std::path::Path) -> anyhow::Result<bool> {
    let (mut scenario, config_path) = scenario::load(path)?;
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let config = steer_config::load_steerd(&config_path)
        .map_err(|e| anyhow::anyhow!("world config: {e}"))?;
    let outcome = engine::run(&scenario, config.topology, config.zones)?;
    let (summary, steps, pops) = report::summarise(&scenario, outcome);
    let failed = report::check(&scenario.expect, &summary);
    print!("{}", report::human(&summary, &failed));
    std::fs::create_dir_all(out)?;
    let base = out.join(&scenario.name);
    let json = serde_json::to_vec_pretty(&report::Report {
        summary: &summary,
        failed_expectations: &failed,
        pops: &pops,
        steps: &steps,
    })?;
    std::fs::write(base.with_extension("json"), json)?;
    std::fs::write(
        base.with_extension("svg"),
        report::svg(&summary, &pops, &steps),
    )?;
    println!(
        "  wrote {} and {}",
        base.with_extension("json").display(),
        base.with_extension("svg").display()
    );
    Ok(failed.is_empty())
}
