//! `[[terminate]]` routes: TLS terminated here in front of a plain TCP service,
//! chosen by SNI and ALPN on the main port, or on listeners of their own, and
//! optionally only for client certificates the policy grants the route.

use std::collections::HashSet;
use std::net::SocketAddr;

use toml::Spanned;

use super::raw::RawTerminate;
use super::{ConfigError, Source};
use crate::terminate::Route;

impl Source<'_> {
    /// Converts the routes. `main` is the main `listen` address (a route must not
    /// listen there too); `client_ca`: whether client certificates can be
    /// verified at all.
    pub(super) fn terminate(
        &self,
        raw: &[RawTerminate],
        main: SocketAddr,
        client_ca: bool,
    ) -> Result<Vec<Route>, ConfigError> {
        let mut routes: Vec<Route> = Vec::with_capacity(raw.len());
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        for raw_route in raw {
            let route = self.terminate_route(raw_route, client_ca)?;
            if let (Some(name), Some(at)) = (&route.name, &raw_route.name)
                && !names.insert(name.clone())
            {
                return Err(self.invalid(at, "name", format!("route {name:?} is named twice")));
            }
            let raw_listen = raw_route.listen.iter().flat_map(|l| l.get_ref());
            for (addr, at) in route.listen.iter().zip(raw_listen) {
                // Port 0 (any free port) is for tests; it never collides.
                if addr.port() == 0 {
                    continue;
                }
                if *addr == main {
                    return Err(self.invalid(at, "listen", "is the main `listen` address"));
                }
                if !ports.insert(*addr) {
                    return Err(self.invalid(at, "listen", format!("{addr} is listed twice")));
                }
            }
            routes.push(route);
        }
        Ok(routes)
    }

    fn terminate_route(&self, raw: &RawTerminate, client_ca: bool) -> Result<Route, ConfigError> {
        let name = match &raw.name {
            None => None,
            Some(name) => {
                policy::check_route_name(name.get_ref())
                    .map_err(|e| self.invalid(name, "name", e))?;
                Some(name.get_ref().clone())
            }
        };
        let listen = match &raw.listen {
            None => Vec::new(),
            Some(list) => self.route_listen(list)?,
        };
        let names = match &raw.names {
            Some(names) => self.server_names(names)?,
            None if raw.alpn.is_empty() && listen.is_empty() => {
                return Err(self.invalid(
                    &raw.backend,
                    "names",
                    "a terminate route needs names or alpn (to be chosen on the main port), \
                     listen (a port of its own), or several of them",
                ));
            }
            None => Vec::new(),
        };
        let client_cert = match &raw.client_cert {
            None => false,
            Some(value) => self.client_cert(value, name.is_some(), client_ca)?,
        };
        Ok(Route {
            name,
            names,
            backend: crate::website::Backend::parse(raw.backend.get_ref())
                .map_err(|e| self.invalid(&raw.backend, "backend", e))?,
            proxy_protocol: raw.proxy_protocol.unwrap_or(false),
            alpn: raw.alpn.clone(),
            listen,
            client_cert,
        })
    }

    fn route_listen(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        if list.get_ref().is_empty() {
            return Err(self.invalid(list, "listen", "list at least one address, or leave it out"));
        }
        list.get_ref()
            .iter()
            .map(|addr| {
                addr.get_ref().parse().map_err(|_| {
                    self.invalid(
                        addr,
                        "listen",
                        "expected an address like \"0.0.0.0:853\" or \"[::]:853\"",
                    )
                })
            })
            .collect()
    }

    /// `client_cert = "required"` (true) or `"none"` (false, the default).
    fn client_cert(
        &self,
        value: &Spanned<String>,
        named: bool,
        client_ca: bool,
    ) -> Result<bool, ConfigError> {
        let required = match value.get_ref().as_str() {
            "required" => true,
            "none" => false,
            _ => {
                return Err(self.invalid(
                    value,
                    "client_cert",
                    "expected \"required\" or \"none\"",
                ));
            }
        };
        if required && !named {
            return Err(self.invalid(
                value,
                "client_cert",
                "a route that requires a client certificate needs a `name`: \
                 policy rules grant it in `routes`",
            ));
        }
        if required && !client_ca {
            return Err(self.invalid(
                value,
                "client_cert",
                "needs [tls] client_ca: client certificates are verified against it",
            ));
        }
        Ok(required)
    }
}
