//! Kubernetes API clients: from a kubeconfig file (`pictl status`) or from
//! the run's rewritten admin kubeconfig held in memory. TLS is verified
//! against the cluster CA the kubeconfig carries.

use crate::secret::Secret;
use crate::transport::BoxFuture;

/// Why there is no API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("reading the kubeconfig")]
    ReadKubeconfig(#[source] kube::config::KubeconfigError),
    #[error("configuring a client from the kubeconfig")]
    Configure(#[source] kube::config::KubeconfigError),
    #[error("building the API client")]
    Build(#[source] kube::Error),
}

/// Makes the run's API client from the admin kubeconfig: the seam where
/// tests put a fake API server.
pub trait ApiConnector: Send + Sync {
    fn client<'a>(
        &'a self,
        kubeconfig: &'a Secret,
    ) -> BoxFuture<'a, Result<kube::Client, ApiError>>;
}

/// The real one: the kubeconfig's server, CA and client certificate.
#[derive(Debug, Default)]
pub struct KubeconfigApi;

impl ApiConnector for KubeconfigApi {
    fn client<'a>(
        &'a self,
        kubeconfig: &'a Secret,
    ) -> BoxFuture<'a, Result<kube::Client, ApiError>> {
        Box::pin(kube_client_from_yaml(kubeconfig))
    }
}

/// A client from a kubeconfig file (`pictl status`).
pub async fn kube_client(path: &std::path::Path) -> Result<kube::Client, ApiError> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(ApiError::ReadKubeconfig)?;
    client_of(kc).await
}

/// A client from kubeconfig text held in memory (a run's rewritten admin
/// kubeconfig: `plan` needs no file on disk for it).
pub async fn kube_client_from_yaml(yaml: &Secret) -> Result<kube::Client, ApiError> {
    let kc =
        kube::config::Kubeconfig::from_yaml(yaml.expose()).map_err(ApiError::ReadKubeconfig)?;
    client_of(kc).await
}

async fn client_of(kc: kube::config::Kubeconfig) -> Result<kube::Client, ApiError> {
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(ApiError::Configure)?;
    // pictl polls with its own deadlines (readiness, rollouts, drains). The
    // client's own retry of 429/503/504 (15 times, waits growing towards
    // 1000 s) would outlast them: a drain must see each refused eviction to
    // keep to --drain-timeout.
    cfg.default_retry = false;
    kube::Client::try_from(cfg).map_err(ApiError::Build)
}
