//! `simplyload pipeline drop NAME`: removes a pipeline's change feed from
//! its source and forgets its state ([`simplyload_app::App::drop_pipeline`]).

use clap::Subcommand;
use simplyload_core::{Error, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Drop a pipeline's replication slot and publication and forget its
    /// state (checkpoints, history); the destination's tables are kept
    Drop {
        pipeline: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
        /// If the pipeline is syncing, wait this long for it
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        wait: Duration,
    },
}

pub async fn run(config: Option<&Path>, cmd: PipelineCommand) -> Result<u8> {
    let PipelineCommand::Drop { pipeline, yes, wait } = cmd;
    let app = super::app(config)?;
    if !yes && !confirmed(&pipeline)? {
        println!("nothing was dropped");
        return Ok(crate::EXIT_FAILED);
    }
    let dropped = app.drop_pipeline(&pipeline, wait).await?;
    match &dropped.feed {
        Some((what, name)) => println!("dropped {what} {name} and its publication"),
        None => println!("pipeline {pipeline} has no change feed on its source"),
    }
    if let Some(hint) = &dropped.feed_not_found {
        println!("{hint}");
    }
    if dropped.had_state {
        println!("forgot pipeline {pipeline}'s state; the destination's tables are kept");
    }
    if app.config().pipelines.contains_key(&pipeline) {
        println!("pipeline {pipeline} is still in the config: its next sync reads every stream again in full");
    }
    Ok(0)
}

/// Asks on the terminal; without one, `--yes` is required.
fn confirmed(pipeline: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::config(format!("dropping pipeline {pipeline} needs confirmation"))
            .with_hint("add --yes (stdin is not a terminal to ask on)"));
    }
    print!(
        "This drops pipeline {pipeline}'s replication slot and publication on its source and forgets its state \
         (checkpoints, history). The destination's tables are kept. Continue? [y/N] "
    );
    std::io::stdout().flush().map_err(|e| Error::internal(e.to_string()))?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Error::internal(e.to_string()))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
