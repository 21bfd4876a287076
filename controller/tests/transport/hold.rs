//! `hold`: a command kept running while its connection lives, as the node
//! lock uses it: a second connection is refused with the holder's words,
//! the lock ends with the first connection, and killing the pid the lock
//! file names (the documented way to break a stale lock) frees it too.

use super::*;
use pictl::runner::node_lock::{READY, around_at};
use pictl::transport::Holding;

fn lock_cmd(path: &Path, who: &str) -> RemoteCommand {
    around_at(
        // Output that does not end with a newline, as the facts' records.
        &RemoteCommand::new("printf")
            .arg("%s\\0")
            .arg(format!("facts of {who}")),
        who,
        path.to_str().expect("utf-8"),
    )
}

async fn held_by(t: &SshTransport, path: &Path, who: &str) -> Holding {
    t.hold(&lock_cmd(path, who), READY, Duration::from_secs(30))
        .await
        .expect("hold")
}

/// Retries `who`'s lock for up to 10 s until it is taken.
async fn eventually_taken(t: &SshTransport, path: &Path, who: &str) -> Holding {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let h = held_by(t, path, who).await;
        if matches!(h, Holding::Running(_)) || Instant::now() > until {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_node_lock_refuses_a_second_holder_and_ends_with_its_connection_or_its_pid() {
    let sshd = sshd_or_skip!();
    let path = sshd.path("pictl.lock");
    let alice = sshd.connect().await;
    let Holding::Running(out) = held_by(&alice, &path, "alice").await else {
        panic!("alice could not take a free lock");
    };
    assert_eq!(
        out.stdout_text(),
        "facts of alice\0",
        "the wrapped command's output"
    );

    let bob = sshd.connect().await;
    let Holding::Exited(refused) = held_by(&bob, &path, "bob").await else {
        panic!("bob took a lock alice holds");
    };
    assert_eq!(refused.status, 75);
    let words = refused.stdout_text();
    assert!(words.starts_with("pictl-lock-held\nalice, pid "), "{words}");
    assert!(
        !words.contains("facts of bob"),
        "bob's command ran unlocked"
    );

    // Alice's run ends: her connection closes and the lock goes with it.
    alice.close().await;
    drop(alice);
    let h = eventually_taken(&bob, &path, "bob").await;
    assert!(matches!(h, Holding::Running(_)), "{h:?}");

    // A stale holder is broken by the pid its words name.
    let carol = sshd.connect().await;
    let Holding::Exited(refused) = held_by(&carol, &path, "carol").await else {
        panic!("carol took a lock bob holds");
    };
    let text = refused.stdout_text();
    let pid: u32 = text
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"));
    assert!(
        Command::new("kill")
            .arg(pid.to_string())
            .status()
            .expect("kill")
            .success()
    );
    let h = eventually_taken(&carol, &path, "carol").await;
    assert!(matches!(h, Holding::Running(_)), "{h:?}");
    drop(bob);

    // A wrapped command that reads stdin reads nothing (the channel's
    // stdin stays open for the holder): it finishes, it does not hang.
    let dave = sshd.connect().await;
    let reads = around_at(
        &RemoteCommand::new("cat"),
        "dave",
        sshd.path("other.lock").to_str().expect("utf-8"),
    );
    let h = dave
        .hold(&reads, READY, Duration::from_secs(10))
        .await
        .expect("hold");
    assert_eq!(h, Holding::Running(Default::default()));
}
