//! The TLS configuration of each route: the website's certificates (by SNI) and
//! the route's ALPN. A route with `client_cert = "required"` gets TLS 1.3 only
//! (the client's certificate stays encrypted on the wire), the tunnels' client
//! certificate verifier (client CAs, revocation list), and no session
//! resumption or 0-RTT: a resumed session would carry the identity of an
//! earlier handshake without verifying the certificate again.

use std::sync::Arc;

use rustls::server::NoServerSessionStorage;
use rustls::server::danger::ClientCertVerifier;

use super::Route;
use crate::config::{TlsMaterial, WebsiteSettings};
use crate::tls::TlsSetupError;

/// The configuration of each route, in order. `verifier` checks client
/// certificates for the routes that require one.
pub(crate) fn configs(
    tls: &TlsMaterial,
    website: &WebsiteSettings,
    routes: &[Route],
    verifier: &Arc<dyn ClientCertVerifier>,
) -> Result<Vec<Arc<rustls::ServerConfig>>, TlsSetupError> {
    routes
        .iter()
        .map(|route| {
            let alpn = route.alpn.iter().map(|id| id.as_bytes().to_vec()).collect();
            let site = crate::tls::site_config(tls, website, alpn)?;
            match route.client_cert {
                false => Ok(site),
                true => with_client_cert(&site, verifier.clone()),
            }
        })
        .collect()
}

/// `site`'s certificates and ALPN, with a client certificate required.
fn with_client_cert(
    site: &rustls::ServerConfig,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let mut config = rustls::ServerConfig::builder_with_provider(tp_net::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsSetupError::ServerCert)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(site.cert_resolver.clone());
    config.alpn_protocols = site.alpn_protocols.clone();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}
