//! Running (f1) for one system and one run: start tp's server alone, time the
//! fresh processes, stop it.

use anyhow::Context;

use super::progress;
use crate::results::Results;
use crate::scenarios::{Metric, first};
use crate::settings::Settings;
use crate::systems::{self, Ctx, SystemId};

pub(super) async fn scenario(
    ctx: &Ctx,
    settings: &Settings,
    system: SystemId,
    run: u32,
    results: &mut Results,
) -> anyhow::Result<()> {
    let Some(stdio) =
        systems::start_stdio(system, ctx, &format!("run{run}-first")).context("did not start")?
    else {
        return Ok(());
    };
    let f = first::run(
        || stdio.tunnel(),
        || stdio.version(),
        settings.first,
        &stdio.log(),
    )
    .await?;
    progress(
        system,
        run,
        "(f1) first tunnel",
        format!(
            "p50 {:.3} ms, p99 {:.3} ms; to exit p50 {:.3} ms; `tp --version` p50 {:.3} ms, \
             p99 {:.3} ms",
            f.p50_ms, f.p99_ms, f.exit_p50_ms, f.start_p50_ms, f.start_p99_ms
        ),
    );
    results.add(system, Metric::FirstP50, run, f.p50_ms);
    results.add(system, Metric::FirstP99, run, f.p99_ms);
    results.add(system, Metric::StartP50, run, f.start_p50_ms);
    results.add(system, Metric::StartP99, run, f.start_p99_ms);
    results.add(system, Metric::ExitP50, run, f.exit_p50_ms);
    Ok(())
}
