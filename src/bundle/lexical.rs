//! The BM25 arm's format: one tantivy index whose schema is below, analysed
//! by the tokenizers in [`super::tokenize`]. The writer (`index::bm25`) and the
//! reader (`search::bm25`) both go through [`Bm25Schema`], so they cannot
//! disagree about a field.

use std::path::{Path, PathBuf};

use tantivy::TantivyError;
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions};

use super::tokenize::{CODE_TOKENIZER, PATH_TOKENIZER};

/// Field names of the BM25 schema.
pub mod field {
    /// Chunk id (`u64`, fast + indexed).
    pub const ID: &str = "id";
    /// Symbol name and parent name(s), code analyzer, frequencies.
    pub const SYMBOL: &str = "symbol";
    /// Relative file path, path analyzer, frequencies.
    pub const PATH: &str = "path";
    /// Chunk text, code analyzer, frequencies and positions.
    pub const CONTENT: &str = "content";
    /// `Language::as_str`, raw term.
    pub const LANGUAGE: &str = "language";
    /// `SymbolKind::as_str`, raw term.
    pub const KIND: &str = "kind";
}

#[derive(Debug, thiserror::Error)]
pub enum Bm25Error {
    #[error("bm25 index directory {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("bm25 index at {} cannot be opened: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: TantivyError,
    },
    #[error("bm25 index at {} lacks field {field:?} (built by another schema version?)", path.display())]
    Schema { path: PathBuf, field: &'static str },
    #[error("bm25 target directory {} already holds an index", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("bm25 memory budget of {budget} bytes is below the minimum of {minimum} bytes")]
    MemoryBudget { budget: usize, minimum: usize },
    #[error("io error at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tantivy: {0}")]
    Tantivy(#[from] TantivyError),
}

/// The BM25 schema with its field handles.
#[derive(Debug, Clone)]
pub struct Bm25Schema {
    pub schema: Schema,
    pub id: Field,
    pub symbol: Field,
    pub path: Field,
    pub content: Field,
    pub language: Field,
    pub kind: Field,
}

impl Bm25Schema {
    pub fn build() -> Self {
        let mut builder = Schema::builder();
        let text = |tokenizer: &str, record: IndexRecordOption| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(record),
            )
        };
        let id = builder.add_u64_field(field::ID, FAST | INDEXED);
        let symbol = builder.add_text_field(field::SYMBOL, text(CODE_TOKENIZER, IndexRecordOption::WithFreqs));
        let path = builder.add_text_field(field::PATH, text(PATH_TOKENIZER, IndexRecordOption::WithFreqs));
        let content = builder.add_text_field(
            field::CONTENT,
            text(CODE_TOKENIZER, IndexRecordOption::WithFreqsAndPositions),
        );
        let language = builder.add_text_field(field::LANGUAGE, STRING);
        let kind = builder.add_text_field(field::KIND, STRING);
        Bm25Schema {
            schema: builder.build(),
            id,
            symbol,
            path,
            content,
            language,
            kind,
        }
    }

    /// Resolves the fields of an existing index's schema, failing on any missing field.
    pub fn from_schema(schema: Schema, dir: &Path) -> Result<Self, Bm25Error> {
        let get = |name: &'static str| {
            schema.get_field(name).map_err(|_| Bm25Error::Schema {
                path: dir.to_path_buf(),
                field: name,
            })
        };
        Ok(Bm25Schema {
            id: get(field::ID)?,
            symbol: get(field::SYMBOL)?,
            path: get(field::PATH)?,
            content: get(field::CONTENT)?,
            language: get(field::LANGUAGE)?,
            kind: get(field::KIND)?,
            schema,
        })
    }
}
