//! Logging in logrus's text format, because K3s logs that way under systemd and
//! people (and pictl's diagnostics) read `journalctl -u k3s` expecting it.

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Kubernetes timestamps have second precision and a `Z` suffix.
pub fn k8s_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let secs = now.unix_timestamp();
    format_k8s_time(secs)
}

pub fn format_k8s_time(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

pub fn parse_k8s_time(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

pub fn emit(level: &str, msg: &str) {
    if level == "debug" && !debug_enabled() {
        return;
    }
    // logrus quotes the message: backslashes, quotes and newlines are escaped.
    let escaped = msg
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    eprintln!("time=\"{}\" level={level} msg=\"{escaped}\"", now_rfc3339());
}

#[macro_export]
macro_rules! info { ($($a:tt)*) => { $crate::log::emit("info", &format!($($a)*)) } }
#[macro_export]
macro_rules! warn { ($($a:tt)*) => { $crate::log::emit("warning", &format!($($a)*)) } }
#[macro_export]
macro_rules! error { ($($a:tt)*) => { $crate::log::emit("error", &format!($($a)*)) } }
#[macro_export]
macro_rules! debug { ($($a:tt)*) => { $crate::log::emit("debug", &format!($($a)*)) } }
