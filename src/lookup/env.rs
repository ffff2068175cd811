//! What one process knows about the providers: keys and base URLs from each provider's own
//! flags and variables (declared by the provider, so a new provider brings its own), and the
//! key file any provider may fall back to. Never stored with a job: every process reads its own.

use std::path::PathBuf;

use clap::{Arg, ArgMatches};

use super::providers::{self, ProviderSpec};
use super::ConfigError;
use crate::secret::Secret;
use crate::settings::{ProviderEnv, Settings, KEY_FILE_ENV};

#[derive(Clone, Debug, Default)]
pub struct LookupEnv {
    providers: ProviderEnv,
    key_file: Option<PathBuf>,
}

impl LookupEnv {
    pub fn new(providers: ProviderEnv, key_file: Option<PathBuf>) -> LookupEnv {
        LookupEnv {
            providers,
            key_file,
        }
    }

    pub fn from_settings(settings: &Settings) -> LookupEnv {
        LookupEnv::new(settings.providers.clone(), settings.lookup_key_file.clone())
    }

    /// The key for `provider`: its own variable, else the key file; None when neither is set.
    /// A key file that is set but unreadable or empty is an error.
    pub fn key(&self, provider: &dyn ProviderSpec) -> Result<Option<Secret>, ConfigError> {
        if let Some(key) = self
            .providers
            .keys
            .get(provider.name())
            .filter(|k| !k.is_empty())
        {
            return Ok(Some(key.clone()));
        }
        match &self.key_file {
            Some(path) => Secret::from_file(path)
                .map(Some)
                .map_err(|e| ConfigError::KeyFile {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
            None => Ok(None),
        }
    }

    /// The key `provider` must have, or an error naming the variable to set.
    pub fn required_key(&self, provider: &dyn ProviderSpec) -> Result<Secret, ConfigError> {
        self.key(provider)?.ok_or(ConfigError::KeyNotSet {
            provider: provider.name(),
            var: provider.key_env().unwrap_or(KEY_FILE_ENV),
        })
    }

    /// The configured base URL of `provider` (None: its public service).
    pub fn base_url(&self, provider: &dyn ProviderSpec) -> Option<String> {
        self.providers
            .base_urls
            .get(provider.name())
            .filter(|u| !u.trim().is_empty())
            .cloned()
    }
}

/// `--kakao-rest-api-key` from `KAKAO_REST_API_KEY`.
fn flag_of(var: &str) -> &'static str {
    // Once per provider at start-up: clap wants names that live as long as the command.
    Box::leak(var.to_ascii_lowercase().replace('_', "-").into_boxed_str())
}

fn base_flag(p: &dyn ProviderSpec) -> Option<&'static str> {
    p.base_url_env()
        .map(|v| flag_of(v.strip_prefix("GEOBATCH_").unwrap_or(v)))
}

/// Each provider's key and base-URL flags, with their variables, for every command.
pub fn cli_args() -> Vec<Arg> {
    let mut args = Vec::new();
    for p in providers::all() {
        if let Some(var) = p.key_env() {
            args.push(
                Arg::new(flag_of(var))
                    .long(flag_of(var))
                    .env(var)
                    .global(true)
                    .hide_env_values(true)
                    .value_name("KEY")
                    .help(format!(
                        "{} API key, for lookup {} (never stored with a job; each process has its own)",
                        p.title(),
                        p.name()
                    )),
            );
        }
        if let (Some(var), Some(flag)) = (p.base_url_env(), base_flag(*p)) {
            args.push(
                Arg::new(flag)
                    .long(flag)
                    .env(var)
                    .global(true)
                    .value_name("URL")
                    .help(format!(
                        "{} base URL (unset: {})",
                        p.title(),
                        p.default_base_url().unwrap_or("none")
                    )),
            );
        }
    }
    args
}

/// The values of [`cli_args`].
pub fn provider_env(matches: &ArgMatches) -> ProviderEnv {
    let mut env = ProviderEnv::default();
    for p in providers::all() {
        if let Some(var) = p.key_env() {
            if let Ok(Some(key)) = matches.try_get_one::<String>(flag_of(var)) {
                let key = key.trim();
                if !key.is_empty() {
                    env.keys.insert(p.name().to_string(), Secret::new(key));
                }
            }
        }
        if let Some(flag) = base_flag(*p) {
            if let Ok(Some(url)) = matches.try_get_one::<String>(flag) {
                env.base_urls
                    .insert(p.name().to_string(), url.trim().to_string());
            }
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_variable_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "FILEKEY\n").unwrap();
        let kakao = providers::find("kakao").unwrap();
        let vworld = providers::find("vworld").unwrap();
        let mut env = LookupEnv::default();
        let err = env.required_key(kakao).unwrap_err().to_string();
        assert!(err.contains("KAKAO_REST_API_KEY"), "{err}");
        let err = env.required_key(vworld).unwrap_err().to_string();
        assert!(err.contains("VWORLD_API_KEY"), "{err}");
        env.key_file = Some(file.clone());
        assert_eq!(env.required_key(kakao).unwrap().expose(), "FILEKEY");
        env.providers
            .keys
            .insert("kakao".into(), Secret::new("ENVKEY"));
        assert_eq!(env.required_key(kakao).unwrap().expose(), "ENVKEY");
        assert_eq!(env.required_key(vworld).unwrap().expose(), "FILEKEY");
        std::fs::write(&file, "\n").unwrap();
        let err = env.key(vworld).unwrap_err().to_string();
        assert!(err.contains(KEY_FILE_ENV), "{err}");
    }

    #[test]
    fn every_provider_brings_its_own_flags() {
        let cmd = clap::Command::new("x").args(cli_args());
        let m = cmd
            .try_get_matches_from([
                "x",
                "--kakao-rest-api-key",
                " K ",
                "--nominatim-base-url",
                "http://127.0.0.1:9",
            ])
            .unwrap();
        let env = provider_env(&m);
        assert_eq!(env.keys["kakao"].expose(), "K");
        assert_eq!(env.base_urls["nominatim"], "http://127.0.0.1:9");
        assert!(cli_args()
            .iter()
            .any(|a| a.get_long() == Some("vworld-api-key")));
    }
}
