//! The `/metrics` endpoint's text, in the Prometheus text exposition format (version 0.0.4).
//! Written by hand: a few gauges, counters by label and one histogram need no library.

use std::fmt::Write;

use crate::service::{NodeState, LATENCY_BUCKETS};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn value(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, kind, help);
        self.value(name, &[], value);
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The node's metrics: its progress, the host loop's counters and the transport's.
pub fn render(state: &NodeState) -> String {
    let stats = state.stats();
    let mut out = Out(String::new());
    out.single(
        "medchain_up",
        "gauge",
        "1 while the node's host loop runs.",
        u8::from(state.running()),
    );
    out.single(
        "medchain_height",
        "gauge",
        "The committed height.",
        state.height(),
    );
    out.single(
        "medchain_round",
        "gauge",
        "The consensus round the node is in.",
        state.round(),
    );
    out.single(
        "medchain_mempool_transactions",
        "gauge",
        "Transactions in the node's mempool (submitted here or received), not yet committed.",
        state.mempool(),
    );
    out.single(
        "medchain_peers_connected",
        "gauge",
        "Peers with an authenticated connection.",
        state.transport().peers_connected(),
    );
    out.single(
        "medchain_peers",
        "gauge",
        "The other members of the network.",
        state.peers_total,
    );
    out.single(
        "medchain_pending_submissions",
        "gauge",
        "Transactions submitted to this node, not yet committed or refused.",
        stats.pending,
    );
    out.single(
        "medchain_transactions_submitted_total",
        "counter",
        "Transactions accepted by the submit endpoint.",
        stats.submitted,
    );
    out.single(
        "medchain_blocks_committed_total",
        "counter",
        "Blocks committed and appended to the ledger since the start.",
        stats.blocks,
    );
    out.single(
        "medchain_transactions_committed_total",
        "counter",
        "Transactions in those blocks.",
        stats.txs,
    );
    out.header(
        "medchain_transactions_refused_total",
        "counter",
        "Transactions submitted here and refused by a ledger rule, by rule.",
    );
    for (rule, n) in &stats.refused {
        out.value("medchain_transactions_refused_total", &[("rule", *rule)], n);
    }
    out.header(
        "medchain_messages_dropped_total",
        "counter",
        "Received protocol messages dropped by the node, by reason (the transport's own drops are medchain_transport_*).",
    );
    for (reason, n) in &stats.dropped {
        out.value("medchain_messages_dropped_total", &[("reason", *reason)], n);
    }
    out.header(
        "medchain_key_requests_answered_total",
        "counter",
        "Key requests for records added here, answered by this node, by answer.",
    );
    for (answer, n) in &stats.key_requests_answered {
        out.value(
            "medchain_key_requests_answered_total",
            &[("answer", answer.as_str())],
            n,
        );
    }
    out.header(
        "medchain_key_answers_received_total",
        "counter",
        "Answers received to the key requests this node relayed, by answer.",
    );
    for (answer, n) in &stats.key_answers_received {
        out.value(
            "medchain_key_answers_received_total",
            &[("answer", answer.as_str())],
            n,
        );
    }
    out.single(
        "medchain_evidence_total",
        "counter",
        "Equivocation evidence received.",
        stats.evidence,
    );
    out.single(
        "medchain_transmit_failed_total",
        "counter",
        "Protocol messages the transport refused to queue.",
        stats.send_failed,
    );
    let name = "medchain_commit_latency_seconds";
    out.header(
        name,
        "histogram",
        "Submit-to-commit latency of the transactions submitted here.",
    );
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BUCKETS.iter().zip(stats.latency.buckets) {
        cumulative += n;
        let le = bound.to_string();
        out.value(&bucket, &[("le", le.as_str())], cumulative);
    }
    out.value(&bucket, &[("le", "+Inf")], stats.latency.count);
    out.value(&format!("{name}_sum"), &[], stats.latency.sum);
    out.value(&format!("{name}_count"), &[], stats.latency.count);
    let mut last = "";
    for c in state.transport().counters() {
        if c.name != last {
            let kind = if c.name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            out.header(
                c.name,
                kind,
                "The peer transport (docs/operations.md, \"Counters\").",
            );
            last = c.name;
        }
        match c.reason {
            Some(reason) => out.value(c.name, &[("reason", reason)], c.value),
            None => out.value(c.name, &[], c.value),
        }
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Out(String::new());
        out.value("m", &[("a", "x\"y\\z\nw"), ("b", "c")], 3);
        assert_eq!(out.0, "m{a=\"x\\\"y\\\\z\\nw\",b=\"c\"} 3\n");
    }
}
