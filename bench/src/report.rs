//! `docs/benchmarks.md` is made of sections, each between markers, so a section measured again
//! (`--only mqtt`) replaces its own part and leaves the others, with their dates, as they were.

use std::path::Path;

use anyhow::Result;

const HEADER: &str = "# Benchmarks\n\n\
Measured by `make bench` (`scripts/bench.sh`: release builds, the test services of `scripts/services.sh`, \
and the peers from Debian packages), client and servers on the same machine. Each section says when and where \
it was measured; `make bench ARGS='--only storage'` (or `alerts`, `mqtt`, `live`, `agent`) measures one section \
again. The operator section comes from `scripts/bench-operator.sh`.\n";

/// Replaces (or appends) the section `key` of the report at `path`.
pub fn update(path: &Path, key: &str, text: &str) -> Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let current = if current.contains("<!-- section:") { current } else { format!("{HEADER}\n") };
    let (begin, end) = (format!("<!-- section:{key} -->\n"), format!("<!-- /section:{key} -->\n"));
    let block = format!("{begin}{}\n{end}", text.trim_end());
    let next = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &current[..b], &current[e + end.len()..]),
        _ => format!("{}\n{block}", current.trim_end()),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, next)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_replaces_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.md");
        update(&path, "a", "## A\nfirst run").unwrap();
        update(&path, "b", "## B\ntwo").unwrap();
        update(&path, "a", "## A\nsecond run").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Benchmarks"));
        // (The header says "measures one section", so the test looks for words of its own.)
        assert!(text.contains("## A\nsecond run") && !text.contains("first run"));
        assert!(text.contains("## B\ntwo"));
        assert!(text.find("## A").unwrap() < text.find("## B").unwrap(), "sections keep their place");
    }
}
