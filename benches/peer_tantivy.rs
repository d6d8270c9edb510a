//! The peer our BM25 arm is measured against: stock tantivy on the very index
//! the engine opened (same analyzers, registered the same way), queried the
//! way a tantivy user would — a lenient `QueryParser` and `TopDocs` — with
//! chunk ids read back through the `id` fast field.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::{Query, QueryParser};
use tantivy::{Index, IndexReader, Searcher};
use trusty_search::bundle::lexical::{Bm25Schema, field};
use trusty_search::bundle::tokenize;
use trusty_search::search::bm25::DEFAULT_BOOSTS;

pub struct StockTantivy {
    index: Index,
    fields: Bm25Schema,
    _reader: IndexReader,
    searcher: Searcher,
    ids: Vec<Column<u64>>,
}

impl StockTantivy {
    pub fn open(dir: &Path) -> StockTantivy {
        let index = Index::open_in_dir(dir).expect("bm25 index opens");
        tokenize::register(&index);
        let fields = Bm25Schema::from_schema(index.schema(), dir).expect("bm25 schema");
        let reader = index.reader().expect("reader");
        let searcher = reader.searcher();
        let ids = searcher
            .segment_readers()
            .iter()
            .map(|s| s.fast_fields().u64(field::ID).expect("id fast field"))
            .collect();
        StockTantivy {
            index,
            fields,
            _reader: reader,
            searcher,
            ids,
        }
    }

    /// Lower bound: the content field only.
    pub fn content_only(&self, text: &str, k: usize) -> Vec<(u32, f32)> {
        let parser = QueryParser::for_index(&self.index, vec![self.fields.content]);
        let (query, _errors) = parser.parse_query_lenient(text);
        self.top_docs(query.as_ref(), k)
    }

    /// The same work as our arm: symbol, path and content with our boosts.
    pub fn same_fields(&self, text: &str, k: usize) -> Vec<(u32, f32)> {
        let f = &self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.symbol, f.path, f.content]);
        for (field, boost) in [
            (f.symbol, DEFAULT_BOOSTS.symbol),
            (f.path, DEFAULT_BOOSTS.path),
            (f.content, DEFAULT_BOOSTS.content),
        ] {
            parser.set_field_boost(field, boost);
        }
        let (query, _errors) = parser.parse_query_lenient(text);
        self.top_docs(query.as_ref(), k)
    }

    fn top_docs(&self, query: &dyn Query, k: usize) -> Vec<(u32, f32)> {
        if k == 0 {
            return Vec::new();
        }
        let top = self
            .searcher
            .search(query, &TopDocs::with_limit(k).order_by_score())
            .expect("stock search");
        top.into_iter()
            .filter_map(|(score, a)| {
                self.ids[a.segment_ord as usize]
                    .first(a.doc_id)
                    .map(|id| (id as u32, score))
            })
            .collect()
    }
}
