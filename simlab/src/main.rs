//! simlab: run chaos scenarios against the real Steer control plane on a
//! simulated clock and report what clients would have experienced.
//!
//! `simlab run SCENARIO.toml [--seed N] [--out DIR]` prints a summary,
//! writes `<name>.json` and `<name>.svg`, and exits 1 if an expectation in
//! the scenario fails (2 on a bad scenario file). `simlab compare` does the
//! same and also runs the scenario's `config_change` the other way (at
//! once or staged), prints both side by side and writes
//! `<name>-compare.json` (as `run` does for `compare_rollouts = true`).

mod change;
mod cluster;
mod compare;
mod engine;
mod naive;
mod report;
mod scenario;
mod sli;

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
    /// Run a scenario's config_change all at once and staged, and compare.
    Compare {
        scenario: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write the JSON reports and SVG chart.
        #[arg(long, default_value = "target/simlab")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let (scenario, seed, out, compare) = match Cli::parse().command {
        Command::Run {
            scenario,
            seed,
            out,
        } => (scenario, seed, out, false),
        Command::Compare {
            scenario,
            seed,
            out,
        } => (scenario, seed, out, true),
    };
    match run(&scenario, seed, &out, compare) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("simlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(
    path: &std::path::Path,
    seed: Option<u64>,
    out: &std::path::Path,
    compare: bool,
) -> anyhow::Result<bool> {
    let (mut scenario, config_path) = scenario::load(path)?;
    let compare = compare || scenario.compare_rollouts;
    if let Some(seed) = seed {
        scenario.seed = seed;
        scenario.seeds.clear();
    }
    let config = steer_config::load_steerd(&config_path)
        .map_err(|e| anyhow::anyhow!("world config: {e}"))?;
    let proposed = change::load_proposed(&scenario, &config)?;
    // The first seed writes the report and chart; every seed must hold.
    let mut all_hold = true;
    let mut first = None;
    let seeds: Vec<u64> = std::iter::once(scenario.seed)
        .chain(
            scenario
                .seeds
                .iter()
                .copied()
                .filter(|s| *s != scenario.seed),
        )
        .collect();
    for seed in seeds {
        let mut run = scenario.clone();
        run.seed = seed;
        let slos = sli::slo_specs(&run.world, &config.slos);
        let outcome = engine::run(&run, &config, &slos, proposed.as_ref())?;
        let (mut summary, steps, pops) = report::summarise(&run, outcome);
        if run.expect.max_churn_vs_naive.is_some() {
            let mut naive = run.clone();
            naive.policy = "naive".into();
            let outcome = engine::run(&naive, &config, &[], None)?;
            summary.naive_churn = Some(outcome.steps.iter().map(|s| s.answer_changes).sum());
        }
        let failed = report::check(&run.expect, &summary);
        print!("{}", report::human(&summary, &failed));
        all_hold &= failed.is_empty();
        let compared = if compare {
            let c = compare::compare(&run, &config, &slos, proposed.as_ref(), (&summary, &steps))?;
            print!("{}", c.human());
            all_hold &= c.failed_expectations.is_empty();
            Some(c)
        } else {
            None
        };
        if first.is_none() {
            first = Some((summary, steps, pops, failed, compared));
        }
    }
    let Some((summary, steps, pops, failed, compared)) = first else {
        anyhow::bail!("no seed to run");
    };
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
    if let Some(c) = compared {
        let path = out.join(format!("{}-compare.json", scenario.name));
        std::fs::write(&path, serde_json::to_vec_pretty(&c)?)?;
        println!("  wrote {}", path.display());
    }
    Ok(all_hold)
}
