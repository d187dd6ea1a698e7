//! `[[terminate]]` routes: TLS terminated here in front of a plain TCP service,
//! chosen by SNI and ALPN on the main port, or on listeners of their own.

use std::collections::HashSet;
use std::net::SocketAddr;

use toml::Spanned;

use super::raw::RawTerminate;
use super::{ConfigError, Source};
use crate::terminate::Route;

impl Source<'_> {
    /// Converts the routes. `main` is the main `listen` address (a route must not
    /// listen there too).
    pub(super) fn terminate(
        &self,
        raw: &[RawTerminate],
        main: SocketAddr,
    ) -> Result<Vec<Route>, ConfigError> {
        let mut routes: Vec<Route> = Vec::with_capacity(raw.len());
        let mut ports = HashSet::new();
        for raw_route in raw {
            let route = self.terminate_route(raw_route)?;
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

    fn terminate_route(&self, raw: &RawTerminate) -> Result<Route, ConfigError> {
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
        Ok(Route {
            names,
            backend: crate::website::Backend::parse(raw.backend.get_ref())
                .map_err(|e| self.invalid(&raw.backend, "backend", e))?,
            proxy_protocol: raw.proxy_protocol.unwrap_or(false),
            alpn: raw.alpn.clone(),
            listen,
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
}
