//! Where the bridge connects: `mqtt_url` and the TLS keys, parsed and checked at start so a
//! mistake is an error that names its key, not a reconnect loop.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, ConfigError};

/// The external broker, from `mqtt_url` (`mqtt://[user:password@]host[:port]`, or `mqtts://`
/// for TLS; `tcp://` and `ssl://` are accepted as their aliases).
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl BrokerUrl {
    pub fn parse(text: &str) -> Result<BrokerUrl, ConfigError> {
        let err = |reason: String| ConfigError::new("mqtt_url", reason);
        let url = url::Url::parse(text).map_err(|e| err(format!("{}: {e}", crate::config::redact_url(text))))?;
        let (tls, default_port) = match url.scheme() {
            "mqtt" | "tcp" => (false, 1883),
            "mqtts" | "ssl" => (true, 8883),
            other => return Err(err(format!("unknown scheme `{other}`; expected mqtt:// or mqtts://"))),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| err("has no host; expected mqtt://host:1883".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(err("takes no path or query; the bridge always subscribes $share/microdash/metrics/#".into()));
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let username = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(decode);
        Ok(BrokerUrl { host, port: url.port().unwrap_or(default_port), tls, username, password })
    }
}

/// Everything the bridge needs to connect.
#[derive(Clone)]
pub struct BridgeSettings {
    pub broker: BrokerUrl,
    /// Stable per process across restarts: the broker keeps the session (and the messages
    /// queued while the bridge was away) under this id.
    pub client_id: String,
    /// `$share/microdash/metrics/#`, or `metrics/#` when `mqtt_shared_subscription` is false.
    pub topic: &'static str,
    /// Set for `mqtts://`.
    pub tls: Option<Arc<ClientConfig>>,
}

/// The topic filter of the contract: one share group, every tenant.
pub const SHARED_SUBSCRIPTION: &str = "$share/microdash/metrics/#";

impl BridgeSettings {
    /// `None` when no external broker is configured.
    pub fn from_config(config: &Config) -> Result<Option<BridgeSettings>, ConfigError> {
        let Some(url) = &config.mqtt_url else { return Ok(None) };
        let broker = BrokerUrl::parse(url)?;
        let tls = tls_config(
            broker.tls,
            config.mqtt_ca_file.as_deref(),
            config.mqtt_client_cert_file.as_deref(),
            config.mqtt_client_key_file.as_deref(),
        )?;
        let client_id = config.mqtt_client_id.clone().unwrap_or_else(default_client_id);
        let topic = if config.mqtt_shared_subscription { SHARED_SUBSCRIPTION } else { "metrics/#" };
        Ok(Some(BridgeSettings { broker, client_id, topic, tls }))
    }
}

/// `microdash-{hostname}`: one persistent session per host (a pod name on Kubernetes).
pub fn default_client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into());
    format!("microdash-{host}")
}

/// The rustls client configuration for `mqtts://`: the system's roots, or only `ca_file`'s
/// certificates when it is set; a client certificate when both its files are set.
pub fn tls_config(
    tls: bool,
    ca_file: Option<&Path>,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
) -> Result<Option<Arc<ClientConfig>>, ConfigError> {
    if !tls {
        for (key, value) in
            [("mqtt_ca_file", ca_file), ("mqtt_client_cert_file", cert_file), ("mqtt_client_key_file", key_file)]
        {
            if value.is_some() {
                return Err(ConfigError::new(key, "is only used with an mqtts:// mqtt_url"));
            }
        }
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs("mqtt_ca_file", path)? {
                roots.add(cert).map_err(|e| ConfigError::new("mqtt_ca_file", format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ConfigError::new(
                    "mqtt_ca_file",
                    "no system CA certificates were found; set mqtt_ca_file to the broker's CA (PEM)",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("mqtt_url", format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let config = match (cert_file, key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_certs("mqtt_client_cert_file", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                ConfigError::new("mqtt_client_key_file", format!("{}: no PEM private key ({e})", key.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| ConfigError::new("mqtt_client_key_file", format!("does not fit the certificate: {e}")))?
        }
        (Some(_), None) => {
            return Err(ConfigError::new("mqtt_client_key_file", "is required with mqtt_client_cert_file"));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new("mqtt_client_cert_file", "is required with mqtt_client_key_file"));
        }
    };
    Ok(Some(Arc::new(config)))
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(key, format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigLayer;

    /// The bridge checks its own settings from the resolved configuration (the CLI runs this
    /// check before serving and for `--check-config`); errors name the key.
    #[test]
    fn settings_errors_name_the_key() {
        let cases = [
            (ConfigLayer { mqtt_url: Some("http://broker".into()), ..Default::default() }, "mqtt_url"),
            (
                ConfigLayer {
                    mqtt_url: Some("mqtt://broker".into()),
                    mqtt_ca_file: Some("/ca.pem".into()),
                    ..Default::default()
                },
                "mqtt_ca_file",
            ),
        ];
        for (layer, key) in cases {
            let config = Config::resolve(layer).unwrap();
            let Err(err) = BridgeSettings::from_config(&config) else { panic!("{key}: accepted") };
            assert_eq!(err.key, key);
        }
        let config = Config::resolve(ConfigLayer::default()).unwrap();
        assert!(BridgeSettings::from_config(&config).unwrap().is_none(), "no mqtt_url: no bridge");
    }

    #[test]
    fn urls_give_host_port_tls_and_credentials() {
        let u = BrokerUrl::parse("mqtt://broker").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls, u.username.as_deref()), ("broker", 1883, false, None));
        let u = BrokerUrl::parse("mqtts://micro%40dash:p%3Ass@10.0.0.1:9883/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("10.0.0.1", 9883, true));
        assert_eq!((u.username.as_deref(), u.password.as_deref()), (Some("micro@dash"), Some("p:ss")));
        assert_eq!(BrokerUrl::parse("ssl://[::1]").unwrap().host, "::1");
        assert_eq!(BrokerUrl::parse("ssl://[::1]").unwrap().port, 8883);
        for bad in ["http://x", "mqtt://", "mqtt://x/metrics", "broker:1883"] {
            assert_eq!(BrokerUrl::parse(bad).unwrap_err().key, "mqtt_url", "{bad}");
        }
        assert!(!format!("{:?}", BrokerUrl::parse("mqtt://u:secret@h").unwrap()).contains("secret"));
    }

    #[test]
    fn tls_keys_are_checked() {
        let p = Path::new("/nonexistent/ca.pem");
        assert_eq!(tls_config(false, Some(p), None, None).unwrap_err().key, "mqtt_ca_file");
        assert_eq!(tls_config(true, Some(p), None, None).unwrap_err().key, "mqtt_ca_file");
        assert_eq!(tls_config(true, None, Some(p), None).unwrap_err().key, "mqtt_client_key_file");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(tls_config(true, Some(&empty), None, None).unwrap_err().reason.contains("no PEM certificate"));
    }
}
