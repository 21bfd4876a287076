//! The command line in a unit's `ExecStart=`, as systemd splits it: lines
//! joined at a trailing backslash, words split at whitespace, single and
//! double quotes grouping, a backslash escaping the next character. This is
//! what K3s's install.sh writes (one quoted flag per line).

/// The words of the first `ExecStart=` of `unit` (without a leading `-`,
/// `@`, `+` or `!` prefix), or `None` when there is none.
pub fn exec_start(unit: &str) -> Option<Vec<String>> {
    let joined = join_continuations(unit);
    let line = joined
        .lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix("ExecStart="))?;
    let line = line.trim_start_matches(['-', '@', '+', '!']);
    Some(split_words(line))
}

/// Lines ending in `\` continue on the next one.
fn join_continuations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                out.push_str(head);
                out.push(' ');
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// systemd's word splitting (enough of it for what installers write).
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_sh_layout_is_split_into_its_words() {
        let unit = "[Service]\nType=notify\nExecStartPre=-/sbin/modprobe overlay\nExecStart=/usr/local/bin/k3s \\\n    server \\\n\t'--disable' \\\n\t'traefik' \\\n\t'--node-label=zone=shelf one' \\\n\n";
        assert_eq!(
            exec_start(unit).expect("ExecStart"),
            [
                "/usr/local/bin/k3s",
                "server",
                "--disable",
                "traefik",
                "--node-label=zone=shelf one"
            ]
        );
    }

    #[test]
    fn quotes_escapes_and_empty_words_follow_systemd() {
        assert_eq!(
            split_words(r#"a 'b c' "d'e" f\ g ''"#),
            ["a", "b c", "d'e", "f g", ""]
        );
        // install.sh's quote() writes an embedded ' as '\''.
        assert_eq!(split_words(r"'it'\''s'"), ["it's"]);
    }

    #[test]
    fn a_unit_without_exec_start_has_no_command() {
        assert_eq!(exec_start("[Service]\nType=notify\n"), None);
    }
}
