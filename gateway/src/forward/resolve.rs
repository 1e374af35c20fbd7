//! Name resolution for the HTTP agent. ureq looks the host up before every request, even one
//! that reuses a pooled connection, and — since we always set a timeout — does so on a new
//! thread each time. This cache keeps it to one lookup per host a minute; a lookup still
//! honours the timeout, and failures are not cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a lookup is reused.
const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    lookup: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!("{}://{}", uri.scheme_str().unwrap_or(""), uri.authority().map_or("", |a| a.as_str()));
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, a)| a.clone());
        if let Some(addrs) = cached {
            return Ok(addrs);
        }
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::time::Duration as UreqDuration;

    #[test]
    fn a_lookup_is_reused_per_scheme_and_authority() {
        let r = CachingResolver::default();
        let config = Config::default();
        let timeout = || NextTimeout {
            after: UreqDuration::from_secs(5),
            reason: ureq::Timeout::Resolve,
            ..NextTimeout::default()
        };
        let a: Uri = "http://127.0.0.1:8080/fhir".parse().unwrap();
        let b: Uri = "http://127.0.0.1:9090/fhir".parse().unwrap();
        let first = r.resolve(&a, &config, timeout()).unwrap();
        assert_eq!(first[0].port(), 8080);
        assert_eq!(r.resolve(&a, &config, timeout()).unwrap()[0], first[0]);
        assert_eq!(r.resolve(&b, &config, timeout()).unwrap()[0].port(), 9090);
        assert_eq!(r.cache.lock().unwrap().len(), 2);
        let bad: Uri = "http://no-such-host.invalid/".parse().unwrap();
        assert!(r.resolve(&bad, &config, timeout()).is_err());
        assert_eq!(r.cache.lock().unwrap().len(), 2, "failures are not cached");
    }
}
