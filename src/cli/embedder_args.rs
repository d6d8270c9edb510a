//! Embedder selection shared by the commands that build or query vectors.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::Arc;
use trusty_search::embed::{Breaker, Embedder, EmbedderConfig, HttpEmbedder, HttpEmbedderOptions, load_embedder};
use trusty_search::storage::manifest::EmbedderInfo;

/// After a failed query embedding, how long a shard skips the embeddings service.
const QUERY_EMBEDDER_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedderChoice {
    /// MiniLM when its weights are on this machine, otherwise lexical + graph only.
    Auto,
    None,
    Minilm,
    Http,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EmbedderArgs {
    /// Which embedder computes vectors.
    #[arg(long, env = "TRUSTY_EMBEDDER", default_value = "auto")]
    pub embedder: EmbedderChoice,
    /// Directory with all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json).
    #[arg(long, env = "TRUSTY_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Base URL of an OpenAI-compatible embeddings server (TEI, Ollama, vLLM).
    #[arg(long, env = "TRUSTY_EMBEDDER_URL")]
    pub embedder_url: Option<String>,
    /// Model name sent to the embeddings server.
    #[arg(long, env = "TRUSTY_EMBEDDER_MODEL")]
    pub embedder_model: Option<String>,
    #[arg(long, env = "TRUSTY_EMBEDDER_API_KEY", hide_env_values = true)]
    pub embedder_api_key: Option<String>,
}

impl EmbedderArgs {
    fn http_config(&self) -> Result<EmbedderConfig> {
        let Some(url) = self.embedder_url.clone() else {
            bail!("--embedder http needs --embedder-url")
        };
        Ok(EmbedderConfig::Http {
            url,
            model: self.embedder_model.clone().unwrap_or_else(|| "default".into()),
            api_key: self.embedder_api_key.clone(),
            dimension: None,
        })
    }

    /// The embedder to build with. `auto` quietly falls back to lexical-only.
    pub fn load_for_build(&self) -> Result<Option<Arc<dyn Embedder>>> {
        let minilm = EmbedderConfig::MiniLm {
            model_dir: self.model_dir.clone(),
        };
        match self.embedder {
            EmbedderChoice::None => Ok(None),
            EmbedderChoice::Minilm => load_embedder(&minilm).context("loading MiniLM (see scripts/fetch-minilm.sh)"),
            EmbedderChoice::Http => load_embedder(&self.http_config()?).context("connecting to the embeddings server"),
            EmbedderChoice::Auto => match load_embedder(&minilm) {
                Ok(e) => Ok(e),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "no local MiniLM weights: building a lexical + graph index (scripts/fetch-minilm.sh gets them)"
                    );
                    Ok(None)
                }
            },
        }
    }

    /// The query embedder of a shard: like [`Self::load_for_build`], but an
    /// HTTP embedder gets a short timeout, no retries and a circuit breaker,
    /// and is not probed at start, so a shard starts and serves lexical
    /// search while the embeddings service is down.
    pub fn load_for_shard(&self, timeout: std::time::Duration) -> Result<Option<Arc<dyn Embedder>>> {
        if self.embedder != EmbedderChoice::Http {
            return self.load_for_build();
        }
        let EmbedderConfig::Http {
            url, model, api_key, ..
        } = self.http_config()?
        else {
            unreachable!("http_config builds an HTTP config")
        };
        let http = HttpEmbedder::new(HttpEmbedderOptions {
            url,
            model,
            api_key,
            // A little past the engine's own deadline, so the engine's timeout
            // (which degrades the query) fires first and the request is then
            // abandoned rather than left holding a blocking thread.
            timeout: timeout + std::time::Duration::from_secs(1),
            max_retries: 0,
            ..HttpEmbedderOptions::default()
        })
        .context("configuring the embeddings server")?;
        Ok(Some(Arc::new(Breaker::new(Arc::new(http), QUERY_EMBEDDER_COOLDOWN))))
    }

    /// The query embedder for an index built with `info`: `auto` picks the
    /// kind the index was built with.
    pub fn load_for_query(&self, info: Option<&EmbedderInfo>) -> Result<Option<Arc<dyn Embedder>>> {
        let Some(info) = info else { return Ok(None) };
        match self.embedder {
            EmbedderChoice::None => Ok(None),
            EmbedderChoice::Auto if info.id.starts_with("minilm") => {
                match load_embedder(&EmbedderConfig::MiniLm {
                    model_dir: self.model_dir.clone(),
                }) {
                    Ok(e) => Ok(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "index has MiniLM vectors but no weights here: vector arm off");
                        Ok(None)
                    }
                }
            }
            EmbedderChoice::Auto if self.embedder_url.is_some() => {
                load_embedder(&self.http_config()?).context("connecting to the embeddings server")
            }
            EmbedderChoice::Auto => Ok(None),
            _ => self.load_for_build(),
        }
    }
}
