//! systemd `EnvironmentFile=` syntax, as install.sh writes the unit's
//! `.service.env` (`K3S_TOKEN='…'` lines, 0600): comments, blank lines,
//! optional `export `, single or double quotes.

use std::collections::BTreeMap;

/// The variables of an environment file, in order of name.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let words = super::exec::split_words(value.trim());
        vars.insert(key.trim().to_string(), words.join(" "));
    }
    vars
}

/// `text` without the lines that set `drop` (other lines kept verbatim).
pub fn without(text: &str, drop: &[&str]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        let t = t.strip_prefix("export ").unwrap_or(t);
        let key = t.split_once('=').map(|(k, _)| k.trim());
        if key.is_some_and(|k| drop.contains(&k)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_sh_env_files_are_read_with_their_quotes() {
        let text = "K3S_TOKEN='K10abc::server:s3cret'\nK3S_URL='https://10.0.0.1:6443'\n# note\n\nexport HTTP_PROXY=\"http://proxy:3128\"\n";
        let v = parse(text);
        assert_eq!(v["K3S_TOKEN"], "K10abc::server:s3cret");
        assert_eq!(v["K3S_URL"], "https://10.0.0.1:6443");
        assert_eq!(v["HTTP_PROXY"], "http://proxy:3128");
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn imported_variables_are_removed_and_the_rest_kept() {
        let text = "K3S_TOKEN='x'\nHTTP_PROXY='http://p'\nK3S_URL='https://s:6443'\n";
        assert_eq!(
            without(text, &["K3S_TOKEN", "K3S_URL"]),
            "HTTP_PROXY='http://p'\n"
        );
    }
}
