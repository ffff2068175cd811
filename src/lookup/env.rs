//! What one process knows about the providers from its environment: API keys and base URLs.
//! Never stored with a job: every worker process reads its own.

use std::path::PathBuf;

use super::{ConfigError, Provider, Secret};

/// The variable holding a file with the key, for any provider (its first line).
pub const KEY_FILE_ENV: &str = "GEOBATCH_LOOKUP_KEY_FILE";

/// Keys and base URLs of this process (`KAKAO_REST_API_KEY`, `VWORLD_API_KEY`,
/// `GEOBATCH_LOOKUP_KEY_FILE`, `GEOBATCH_{KAKAO,VWORLD,NOMINATIM}_BASE_URL`).
#[derive(Clone, Debug, Default)]
pub struct LookupEnv {
    pub kakao_key: Option<Secret>,
    pub vworld_key: Option<Secret>,
    /// A file holding the key (first line): used when the provider's own variable is unset.
    pub key_file: Option<PathBuf>,
    pub kakao_base_url: Option<String>,
    pub vworld_base_url: Option<String>,
    pub nominatim_base_url: Option<String>,
}

impl LookupEnv {
    /// The key for `provider`: its own variable, else the key file; `None` when neither is
    /// set. A key file that is set but unreadable or empty is an error.
    pub fn key(&self, provider: Provider) -> Result<Option<Secret>, ConfigError> {
        let own = match provider {
            Provider::Kakao => self.kakao_key.as_ref(),
            Provider::Vworld => self.vworld_key.as_ref(),
            Provider::Nominatim | Provider::Template => None,
        };
        if let Some(key) = own.filter(|k| !k.expose().is_empty()) {
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
    pub fn required_key(&self, provider: Provider) -> Result<Secret, ConfigError> {
        self.key(provider)?.ok_or(ConfigError::KeyNotSet {
            provider,
            var: provider.key_env().unwrap_or(KEY_FILE_ENV),
        })
    }

    /// The configured base URL of `provider` (None: the public service).
    pub fn base_url(&self, provider: Provider) -> Option<String> {
        match provider {
            Provider::Kakao => self.kakao_base_url.clone(),
            Provider::Vworld => self.vworld_base_url.clone(),
            Provider::Nominatim => self.nominatim_base_url.clone(),
            Provider::Template => None,
        }
        .filter(|u| !u.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_variable_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "FILEKEY\n").unwrap();
        let mut env = LookupEnv::default();
        let err = env.required_key(Provider::Kakao).unwrap_err().to_string();
        assert!(err.contains("KAKAO_REST_API_KEY"), "{err}");
        let err = env.required_key(Provider::Vworld).unwrap_err().to_string();
        assert!(err.contains("VWORLD_API_KEY"), "{err}");
        env.key_file = Some(file.clone());
        assert_eq!(
            env.required_key(Provider::Kakao).unwrap().expose(),
            "FILEKEY"
        );
        env.kakao_key = Some(Secret::new("ENVKEY"));
        assert_eq!(
            env.required_key(Provider::Kakao).unwrap().expose(),
            "ENVKEY"
        );
        assert_eq!(
            env.required_key(Provider::Vworld).unwrap().expose(),
            "FILEKEY"
        );
        std::fs::write(&file, "\n").unwrap();
        let err = env.key(Provider::Vworld).unwrap_err().to_string();
        assert!(err.contains(KEY_FILE_ENV), "{err}");
    }
}
