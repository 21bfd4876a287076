//! POSIX shell quoting for words sent to a node.
//!
//! SSH has no argv: the server hands one string to the user's login shell.
//! Every word pictl sends passes through [`quote`], so a node name, a path or
//! a value can never be interpreted as shell syntax. The edge: this module
//! knows nothing about commands, only about single words.

/// Characters that never mean anything to a POSIX shell in any position, so a
/// word made only of them can be sent bare (keeps command lines readable in
/// debug logs). `=` is deliberately absent: a bare `a=b` in command position
/// is an assignment.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | ',' | '+' | '@' | '%')
}

/// Quote `word` so that a POSIX shell reads it back as exactly one word equal
/// to `word`.
///
/// Inside single quotes nothing is special except the closing quote, so a
/// quote in the word is written as `'\''` (close, escaped quote, reopen).
/// NUL cannot be represented in an argv; callers reject it beforehand
/// ([`super::RemoteCommand`] does).
pub fn quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(is_plain) {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quote every word and join them with single spaces: a complete command line.
pub fn join<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    /// Run `printf '%s\0' <quoted words>` through the local /bin/sh and split
    /// the NUL-terminated output: what the shell actually parsed.
    fn sh_words(line: &str) -> Vec<String> {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "set -- {line}\nfor w; do printf '%s\\0' \"$w\"; done"
            ))
            .output()
            .expect("run /bin/sh");
        assert!(out.status.success(), "sh failed on {line:?}: {out:?}");
        let mut words: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|w| String::from_utf8(w.to_vec()).expect("utf8"))
            .collect();
        assert_eq!(words.pop().as_deref(), Some(""), "output ends with NUL");
        words
    }

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(quote("/usr/local/bin/k3s"), "/usr/local/bin/k3s");
        assert_eq!(quote("--node-name"), "--node-name");
    }

    #[test]
    fn empty_word_survives_as_an_argument() {
        assert_eq!(quote(""), "''");
        assert_eq!(sh_words(&join(["", "x", ""])), vec!["", "x", ""]);
    }

    #[test]
    fn assignment_lookalike_is_quoted() {
        assert_eq!(quote("a=b"), "'a=b'");
    }

    #[test]
    fn hostile_words_round_trip_through_sh() {
        let hostile = [
            "node 1",
            "it's",
            "\"double\"",
            "$(touch /tmp/pwned)",
            "`id`",
            "a\nb",
            "x; rm -rf /",
            "*",
            "?[a-z]",
            "-rf",
            "~root",
            "$HOME",
            "\\n\\",
            "'",
            "''",
            "a'b'c",
            "tab\there",
            "{a,b}",
            "!event",
            "#comment",
            "&& true |",
            "é ü 中文 🙂",
        ];
        let words: Vec<&str> = hostile.to_vec();
        assert_eq!(sh_words(&join(words.iter().copied())), hostile);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn sh_reads_back_any_quoted_string(word in "[^\u{0}]*") {
            prop_assert_eq!(sh_words(&quote(&word)), vec![word.clone()]);
        }

        #[test]
        fn sh_reads_back_any_word_list(words in proptest::collection::vec("[^\u{0}]{0,12}", 0..6)) {
            let line = join(words.iter().map(String::as_str));
            prop_assert_eq!(sh_words(&line), words);
        }
    }
}
