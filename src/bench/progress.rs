//! The progress bar on stderr (only for a terminal, never with `--json`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A bar fed from a shared counter by a ticker task.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// A bar counting `counter` up to `total`, or running for `duration`; nothing
    /// when `enabled` is false.
    pub(crate) fn start(
        enabled: bool,
        label: &str,
        counter: Arc<AtomicU64>,
        total: u64,
        duration: Option<Duration>,
    ) -> Progress {
        if !enabled {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let (len, template) = match duration {
            Some(d) => (
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                "{prefix} [{bar:40}] {elapsed_precise} {msg}",
            ),
            None => (
                total,
                "{prefix} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta} {msg}",
            ),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        let start = Instant::now();
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let n = counter.load(Ordering::Relaxed);
                match duration {
                    Some(_) => {
                        b.set_position(
                            u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                        );
                        b.set_message(format!("{n} msgs"));
                    }
                    None => b.set_position(n),
                }
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    /// Stops the ticker and clears the bar.
    pub(crate) fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
