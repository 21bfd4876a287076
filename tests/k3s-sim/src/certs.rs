//! The cluster's TLS material and join token, laid out like K3s under
//! `<data-dir>/server/`: one cluster CA (K3s has several; one is enough for what
//! pictl and kubectl check), the API serving certificate whose SANs follow the node's
//! addresses and `tls-san`, the admin client certificate for the kubeconfig, and the
//! `K10<ca-hash>::server:<secret>` token whose hash lets agents pin the CA.

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::Digest;
use std::path::{Path, PathBuf};

pub struct ClusterTls {
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Loads the CA (creating it once) and (re)issues the serving certificate when the
/// wanted SANs changed, the way K3s's dynamic listener adds new SANs.
pub fn ensure(data_dir: &Path, sans: &[String]) -> Result<ClusterTls> {
    let tls = data_dir.join("server/tls");
    let (ca_pem, ca_key_pem) = ca(&tls)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("parsing server-ca.key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("parsing server-ca.crt")?;
    let (serving_cert_pem, serving_key_pem) = serving(&tls, sans, &issuer)?;
    let (admin_cert_pem, admin_key_pem) = admin(&tls, &issuer)?;
    Ok(ClusterTls {
        ca_pem,
        serving_cert_pem,
        serving_key_pem,
        admin_cert_pem,
        admin_key_pem,
    })
}

/// The cluster CA, created once (K3s keeps a separate client CA; this
/// cluster uses one CA for both): its certificate and key, PEM.
fn ca(tls: &Path) -> Result<(String, String)> {
    let ca_crt = tls.join("server-ca.crt");
    let ca_key = tls.join("server-ca.key");
    Ok(match (read(&ca_crt), read(&ca_key)) {
        (Some(c), Some(k)) => (c, k),
        _ => {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, format!("k3s-server-ca@{}", unix_now()));
            p.distinguished_name = dn;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
            let cert = p.self_signed(&key)?;
            write_private(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
            write_private(&ca_crt, cert.pem().as_bytes(), 0o644)?;
            // K3s keeps a separate client CA; this cluster uses one CA for both.
            write_private(&tls.join("client-ca.crt"), cert.pem().as_bytes(), 0o644)?;
            (cert.pem(), key.serialize_pem())
        }
    })
}

/// A leaf certificate's parameters (the serving and the peer certificate):
/// common name `cn`, IP and DNS `sans`, valid for K3s's leaf lifetime
/// ([`crate::leaf::validity`]), keyed for TLS,
/// with extended key usages `usages`.
pub fn leaf_params(
    cn: &str,
    sans: &[String],
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(s.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = usages.to_vec();
    (p.not_before, p.not_after) = crate::leaf::bounds();
    p.serial_number = Some(crate::leaf::serial());
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// The supervisor's serving certificate on the API port, as K3s's
/// dynamiclistener keeps it (pkg/cluster/https.go `newListener`, `tlsStorage`):
/// a `kubernetes.io/tls` Secret written as JSON to `server/tls/dynamic-cert.json`
/// (dynamiclistener storage/file) and shared as Secret `kube-system/k3s-serving`.
/// New SANs re-sign the certificate with the same private key (dynamiclistener
/// factory/gen.go: `AddCN`/`Renew` go through `getPrivateKey`, which returns the
/// stored key), and so does a certificate within the renewal window
/// (dynamiclistener's `ExpirationDaysCheck`, K3s's `CertificateRenewDays`);
/// only `server/tls/dynamic-cert-regenerate` (https.go `RegenerateCerts`,
/// removed once seen) makes a new key.
fn serving(tls: &Path, sans: &[String], issuer: &Issuer<'_, KeyPair>) -> Result<(String, String)> {
    let file = tls.join(DYNAMIC_CERT);
    let regenerate_file = tls.join("dynamic-cert-regenerate");
    let regenerate = regenerate_file.exists();
    if regenerate {
        std::fs::remove_file(&regenerate_file)?;
    }
    let stored = read(&file).and_then(|t| DynamicCert::parse(&t));
    let wanted: std::collections::BTreeSet<&String> = sans.iter().collect();
    let key = match &stored {
        Some(d)
            if d.sans.iter().collect::<std::collections::BTreeSet<_>>() == wanted
                && !regenerate
                && !crate::leaf::expiring(&d.cert) =>
        {
            return Ok((d.cert.clone(), d.key.clone()));
        }
        Some(d) if !regenerate => {
            KeyPair::from_pem(&d.key).context("parsing dynamic-cert.json's key")?
        }
        _ => KeyPair::generate()?,
    };
    let p = leaf_params("k3s", sans, &[ExtendedKeyUsagePurpose::ServerAuth])?;
    let cert = p.signed_by(&key, issuer)?;
    let d = DynamicCert {
        cert: cert.pem(),
        key: key.serialize_pem(),
        sans: sans.to_vec(),
    };
    write_private(&file, d.to_json().as_bytes(), 0o600)?;
    Ok((d.cert, d.key))
}

/// dynamiclistener's file storage, under `server/tls/`.
pub const DYNAMIC_CERT: &str = "dynamic-cert.json";
const CN_ANNOTATION: &str = "listener.cattle.io/cn-";

/// What `dynamic-cert.json` holds: the certificate, its key and the names
/// it was issued for (dynamiclistener's `listener.cattle.io/cn-*`
/// annotations).
pub struct DynamicCert {
    pub cert: String,
    pub key: String,
    pub sans: Vec<String>,
}

impl DynamicCert {
    pub fn parse(text: &str) -> Option<DynamicCert> {
        use base64::Engine;
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let b64 = |k: &str| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v["data"][k].as_str()?)
                .ok()?;
            String::from_utf8(raw).ok()
        };
        let sans = v["metadata"]["annotations"]
            .as_object()?
            .iter()
            .filter(|(k, _)| k.starts_with(CN_ANNOTATION))
            .filter_map(|(_, v)| v.as_str().map(str::to_owned))
            .collect::<Vec<_>>();
        Some(DynamicCert {
            cert: b64("tls.crt")?,
            key: b64("tls.key")?,
            sans,
        })
    }

    /// The Secret as dynamiclistener encodes it (Go's JSON: bytes in base64).
    pub fn to_json(&self) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let annotations: serde_json::Map<String, serde_json::Value> = self
            .sans
            .iter()
            .map(|s| {
                (
                    format!("{CN_ANNOTATION}{}", s.replace(':', "_")),
                    s.clone().into(),
                )
            })
            .collect();
        serde_json::json!({
            "metadata": {
                "name": "k3s-serving",
                "namespace": "kube-system",
                "annotations": annotations,
            },
            "data": {"tls.crt": b64(&self.cert), "tls.key": b64(&self.key)},
            "type": "kubernetes.io/tls",
        })
        .to_string()
    }
}

/// The admin client certificate and key (system:admin in system:masters), PEM;
/// issued again, with a new key, when it expires within K3s's renewal window
/// (deps.go `createClientCertKey`: `LoadOrGenerateKeyFile(keyFile, regen)`).
fn admin(tls: &Path, issuer: &Issuer<'_, KeyPair>) -> Result<(String, String)> {
    let admin_crt = tls.join("client-admin.crt");
    let admin_key = tls.join("client-admin.key");
    Ok(match (read(&admin_crt), read(&admin_key)) {
        (Some(c), Some(k)) if !crate::leaf::expiring(&c) => (c, k),
        _ => {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "system:admin");
            dn.push(DnType::OrganizationName, "system:masters");
            p.distinguished_name = dn;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            (p.not_before, p.not_after) = crate::leaf::bounds();
            p.serial_number = Some(crate::leaf::serial());
            p.use_authority_key_identifier_extension = true;
            let cert = p.signed_by(&key, issuer)?;
            write_private(&admin_key, key.serialize_pem().as_bytes(), 0o600)?;
            write_private(&admin_crt, cert.pem().as_bytes(), 0o644)?;
            (cert.pem(), key.serialize_pem())
        }
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// K3s's CA hash: sha256 over the bytes `/cacerts` serves (the CA bundle PEM).
pub fn ca_hash(ca_pem: &str) -> String {
    hex::encode(sha2::Sha256::digest(ca_pem.as_bytes()))
}

/// A parsed token: full `K10<hash>::<user>:<secret>` or a bare secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub ca_hash: Option<String>,
    pub user: String,
    pub secret: String,
}

/// K3s's token forms (pkg/clientaccess/token.go `parseToken`): `K10<ca-hash>::<user>:<password>`,
/// `K10::<user>:<password>` (no CA pinning), `K10<user>:<password>`, or a bare password.
/// A CA hash must be a sha256 hex digest's length; `<user>:` needs a password.
pub fn parse_token(raw: &str) -> Result<Token> {
    let raw = raw.trim();
    if raw.is_empty() {
        bail!("token must not be empty");
    }
    let Some(body) = raw.strip_prefix("K10") else {
        return Ok(Token {
            ca_hash: None,
            user: String::new(),
            secret: raw.to_string(),
        });
    };
    let (hash, creds) = body.split_once("::").unwrap_or(("", body));
    if !hash.is_empty() && hash.len() != 64 {
        bail!("invalid token CA hash length");
    }
    match creds.split_once(':') {
        Some((user, secret)) if !secret.is_empty() => Ok(Token {
            ca_hash: (!hash.is_empty()).then(|| hash.to_string()),
            user: user.to_string(),
            secret: secret.to_string(),
        }),
        _ => bail!("invalid token format"),
    }
}

pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Writes `<data-dir>/server/token` once and returns the server's secret. An existing
/// token is kept; a different configured token is refused, as K3s refuses bootstrap
/// data encrypted with another token.
pub fn ensure_token(data_dir: &Path, configured: Option<&str>, ca_pem: &str) -> Result<String> {
    let path: PathBuf = data_dir.join("server/token");
    let hash = ca_hash(ca_pem);
    let wanted = configured.map(parse_token).transpose()?;
    if let Some(t) = &wanted
        && let Some(h) = &t.ca_hash
        && h != &hash
    {
        bail!("token CA hash does not match the Cluster CA certificate hash: {h} != {hash}");
    }
    let secret = match std::fs::read_to_string(&path) {
        Ok(existing) => {
            let existing = parse_token(&existing).context("parsing existing server token file")?;
            if let Some(w) = &wanted
                && w.secret != existing.secret
            {
                bail!(
                    "bootstrap data already found and encrypted with different token: the configured token does not match {}",
                    path.display()
                );
            }
            existing.secret
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match wanted {
            Some(w) => w.secret,
            None => random_hex(16),
        },
        Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
    };
    let full = format!("K10{hash}::server:{secret}\n");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(full.as_str()) {
        write_private(&path, full.as_bytes(), 0o600)?;
    }
    link_to_token(data_dir, "node-token")?;
    Ok(secret)
}

/// `<data-dir>/server/<name>` as a symlink to `<data-dir>/server/token`, as K3s's
/// `printTokens` (pkg/server/server.go) leaves `node-token` ("backwards
/// compatibility") and `agent-token` when no agent token is configured: a path
/// that is not a symlink yet is removed first; an existing symlink is kept.
pub fn link_to_token(data_dir: &Path, name: &str) -> Result<()> {
    let link = data_dir.join("server").join(name);
    if is_symlink(&link) {
        return Ok(());
    }
    remove_all(&link)?;
    std::os::unix::fs::symlink(data_dir.join("server/token"), &link)
        .with_context(|| format!("linking {}", link.display()))
}

/// `<data-dir>/server/agent-token` as K3s's `printTokens` writes it when an agent
/// token is configured: a symlink left from a run without one is removed, then the
/// file is written (`K10<ca-hash>::node:<secret>`, 0600).
pub fn write_agent_token(data_dir: &Path, full: &str) -> Result<()> {
    let path = data_dir.join("server/agent-token");
    if is_symlink(&path) {
        remove_all(&path)?;
    }
    write_private(&path, full.as_bytes(), 0o600)
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Go's `os.RemoveAll`: a missing path is not an error.
fn remove_all(path: &Path) -> Result<()> {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.with_context(|| format!("removing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_in_every_form_k3s_accepts() {
        let h = "a".repeat(64);
        let t = parse_token(&format!("K10{h}::server:s3cret")).expect("full form");
        assert_eq!(
            t,
            Token {
                ca_hash: Some(h.clone()),
                user: "server".into(),
                secret: "s3cret".into()
            }
        );
        let t = parse_token("K10::server:s3cret").expect("no hash");
        assert_eq!(
            (t.ca_hash, t.user.as_str(), t.secret.as_str()),
            (None, "server", "s3cret")
        );
        let t = parse_token("K10node:pw").expect("no ::");
        assert_eq!((t.user.as_str(), t.secret.as_str()), ("node", "pw"));
        let t = parse_token(&format!("K10{h}::node:pw")).expect("agent token");
        assert_eq!(t.user, "node");
        let t = parse_token("bare:with:colons").expect("bare");
        assert_eq!((t.ca_hash, t.secret.as_str()), (None, "bare:with:colons"));
        let msg = |r: Result<Token>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg(parse_token("K10abc::server:x")),
            "invalid token CA hash length"
        );
        assert_eq!(
            msg(parse_token(&format!("K10{h}::nopassword"))),
            "invalid token format"
        );
        assert_eq!(msg(parse_token("K10::server:")), "invalid token format");
        assert_eq!(msg(parse_token("  ")), "token must not be empty");
    }

    #[test]
    fn token_files_are_laid_out_as_k3s_print_tokens_leaves_them() {
        let dir = std::env::temp_dir().join(format!("k3s-sim-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server = dir.join("server");
        std::fs::create_dir_all(&server).expect("mkdir");
        // An older layout: node-token a plain file.
        std::fs::write(server.join("node-token"), "old").expect("write");
        let secret = ensure_token(&dir, Some("s3cret"), "CA").expect("token");
        assert_eq!(secret, "s3cret");
        let token = server.join("token");
        let link = |name: &str| std::fs::read_link(server.join(name)).ok();
        assert_eq!(link("node-token"), Some(token.clone()));
        assert!(link("token").is_none(), "the token is a file");
        // No agent token: a symlink to the server token.
        link_to_token(&dir, "agent-token").expect("link");
        assert_eq!(link("agent-token"), Some(token.clone()));
        // One configured: the symlink gives way to a file of its own.
        write_agent_token(&dir, "K10x::node:a\n").expect("agent token");
        assert!(link("agent-token").is_none());
        let read = |name: &str| std::fs::read_to_string(server.join(name)).expect("read");
        assert_eq!(read("agent-token"), "K10x::node:a\n");
        assert!(
            read("token").contains("::server:s3cret"),
            "the server token was not touched"
        );
        // Configured no more: a symlink again.
        link_to_token(&dir, "agent-token").expect("relink");
        assert_eq!(link("agent-token"), Some(token));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
