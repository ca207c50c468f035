//! Opening a connection the way libpq does with several hosts: each host in turn, each within
//! `connect_timeout` — the whole attempt, TCP and TLS and startup and (for
//! `target_session_attrs`) the check of the node's role. tokio-postgres applies its timeout to
//! the TCP connect only, so a host that accepts TCP but never answers (a frozen server, whose
//! kernel still completes the handshake) would hold every new connection; here it costs one
//! timeout and the next host is tried.

use std::time::Duration;

use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::password::PasswordSource;

/// deadpool's connector: the hosts one by one, each within the timeout.
pub struct PerHost {
    tls: MakeRustlsConnect,
    /// Asked before each connection, when the password is not the URL's.
    password: Option<PasswordSource>,
    /// One configuration per host of the URL (the URL's own when it names one host).
    hosts: Vec<Config>,
    timeout: Duration,
}

impl PerHost {
    pub fn new(
        config: &Config,
        tls: MakeRustlsConnect,
        timeout: Duration,
        password: Option<PasswordSource>,
    ) -> Self {
        let hosts = if config.get_hosts().len() > 1 {
            (0..config.get_hosts().len())
                .map(|i| one_host(config, i))
                .collect()
        } else {
            vec![config.clone()]
        };
        PerHost {
            tls,
            password,
            hosts,
            timeout,
        }
    }

    /// The longest a connection attempt over every host can take.
    pub fn total_timeout(&self) -> Duration {
        self.timeout * self.hosts.len() as u32
    }
}

impl Connect for PerHost {
    fn connect(
        &self,
        _all_hosts: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        Box::pin(async move {
            let password = match &self.password {
                // A failed fetch is reported by the pool (see `password.rs`).
                Some(source) => match source.fetch().await {
                    Some(password) => Some(password),
                    None => return Err(tokio_postgres::Error::__private_api_timeout()),
                },
                None => None,
            };
            let mut last = None;
            for host in &self.hosts {
                let mut with_password;
                let config = match &password {
                    Some(password) => {
                        with_password = host.clone();
                        with_password.password(password.as_str());
                        &with_password
                    }
                    None => host,
                };
                let attempt = config.connect(self.tls.clone());
                match tokio::time::timeout(self.timeout, attempt).await {
                    Ok(Ok((client, connection))) => {
                        let task = tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        return Ok((client, task));
                    }
                    Ok(Err(err)) => last = Some(err),
                    Err(_) => last = Some(tokio_postgres::Error::__private_api_timeout()),
                }
            }
            Err(last.unwrap_or_else(tokio_postgres::Error::__private_api_timeout))
        })
    }
}

/// `config` with only its `i`-th host (and that host's port and address, when given).
fn one_host(config: &Config, i: usize) -> Config {
    let mut one = Config::new();
    match &config.get_hosts()[i] {
        Host::Tcp(name) => one.host(name),
        #[cfg(unix)]
        Host::Unix(path) => one.host_path(path),
    };
    if let Some(addr) = config.get_hostaddrs().get(i) {
        one.hostaddr(*addr);
    }
    // libpq: one port for every host, or one per host.
    let ports = config.get_ports();
    if let Some(port) = ports.get(i).or(if ports.len() == 1 {
        ports.first()
    } else {
        None
    }) {
        one.port(*port);
    }
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    one.ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation())
        .keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle())
        .target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding());
    if let Some(interval) = config.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn each_host_keeps_everything_but_the_other_hosts() {
        let all = Config::from_str(
            "postgresql://app:secret@h1:5001,h2:5002/db?target_session_attrs=read-write\
             &application_name=x&sslmode=disable&connect_timeout=3",
        )
        .unwrap();
        for (i, (host, port)) in [("h1", 5001), ("h2", 5002)].into_iter().enumerate() {
            let one = one_host(&all, i);
            assert_eq!(one.get_hosts(), &[Host::Tcp(host.to_string())]);
            assert_eq!(one.get_ports(), &[port]);
            assert_eq!(one.get_user(), Some("app"));
            assert_eq!(one.get_password(), Some(&b"secret"[..]));
            assert_eq!(one.get_dbname(), Some("db"));
            assert_eq!(one.get_application_name(), Some("x"));
            assert_eq!(
                one.get_target_session_attrs(),
                all.get_target_session_attrs()
            );
            assert_eq!(one.get_ssl_mode(), all.get_ssl_mode());
            assert_eq!(one.get_connect_timeout(), Some(&Duration::from_secs(3)));
        }
        let shared_port = Config::from_str("host=a,b port=6000 user=u").unwrap();
        assert_eq!(one_host(&shared_port, 1).get_ports(), &[6000]);
    }
}
