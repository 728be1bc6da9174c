//! Progress bars for long operations. They draw only when standard error is a
//! terminal, so scripts and CI logs stay clean.

use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};

/// Creates a bar counting `unit` items up to `total`.
pub fn bar(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!(
        "{{spinner}} {{msg}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} ({{rate}}, {{eta}} left)"
    );
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("progress template is valid")
            .with_key("rate", rate)
            .progress_chars("=> "),
    );
    bar
}

/// Creates a spinner counting items when the total is not known in advance.
pub fn counter(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} {msg} ({rate}, {elapsed})")
            .expect("progress template is valid")
            .with_key("rate", rate),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Writes the rate in whole items per second with thousands separators, where
/// indicatif's own `per_sec` prints four decimals.
fn rate(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = write!(out, "{}/s", HumanCount(state.per_sec() as u64));
}
