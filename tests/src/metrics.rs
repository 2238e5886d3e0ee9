//! Prometheus text-format parsing for assertions on `/metrics`: the samples of one family,
//! their sum, the values of one label.
//!
//! Invariant: a family name matches exactly (`x` never matches `xy`), with or without labels.

use std::collections::BTreeSet;

/// The sample lines of metric `name` (exactly that name, with or without labels).
pub fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// The sum of every sample of metric `name`.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    samples(text, name)
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The distinct values of `label` on metric `name`.
pub fn label_values(text: &str, name: &str, label: &str) -> BTreeSet<String> {
    let needle = format!("{label}=\"");
    samples(text, name)
        .iter()
        .filter_map(|l| {
            let labels = l.split_once('{')?.1.rsplit_once('}')?.0;
            // `,code="…"` or `{code="…"` — label values here never contain `"`.
            let at = labels
                .match_indices(&needle)
                .find(|(i, _)| *i == 0 || labels.as_bytes()[i - 1] == b',')?
                .0;
            let rest = &labels[at + needle.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_sums() {
        let text = "# TYPE x gauge\nx{phase=\"join\",code=\"0x1\"} 2\nx{code=\"other\"} 3\nxy{code=\"z\"} 9\nx 1\n";
        assert_eq!(metric_sum(text, "x"), 6.0);
        let codes: Vec<_> = label_values(text, "x", "code").into_iter().collect();
        assert_eq!(codes, ["0x1", "other"]);
    }
}
