//! Clock synchronization as systemd-timesyncd/chrony report it through
//! `timedatectl`. Unknown (`None`) when the tool or timedated is unavailable.

use super::Exec;

pub fn collect(exec: &dyn Exec) -> Option<bool> {
    let out = exec
        .stdout("timedatectl", &["show", "-p", "NTPSynchronized", "--value"])
        .ok()?;
    match out.trim() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::exec::fake::FakeExec;

    const LINE: &str = "timedatectl show -p NTPSynchronized --value";

    #[test]
    fn ntp_synchronized_yes_no_or_unknown() {
        assert_eq!(
            collect(&FakeExec::default().answer(LINE, "yes\n")),
            Some(true)
        );
        assert_eq!(
            collect(&FakeExec::default().answer(LINE, "no\n")),
            Some(false)
        );
        assert_eq!(collect(&FakeExec::default().answer(LINE, "maybe\n")), None);
        assert_eq!(collect(&FakeExec::default().fail(LINE)), None);
        assert_eq!(collect(&FakeExec::default()), None);
    }
}
