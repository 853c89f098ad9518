/// Known values (hashlib).
const KNOWN: &[(&str, u64)] = &[
    ("", 16825458760271544958),
    ("a", 3585878926028121697),
    ("kubesphere-monitoring-system-alerts.yaml/node.rules", 10051211100510879651),
    ("default-team-a-cpu.yaml/team-a-cpu", 16663100737417954004),
    ("whizard/global", 16690441623381806038),
];

/// (file, group, shards, shard) computed with hashlib.
const KNOWN_SHARDS: &[(&str, &str, u64, u64)] = &[
    ("default-cpu.yaml", "cpu", 2, 0),
    ("default-cpu.yaml", "cpu", 3, 0),
    ("default-cpu.yaml", "cpu", 7, 1),
    ("default-mem.yaml", "mem", 2, 1),
    ("default-mem.yaml", "mem", 3, 0),
    ("default-mem.yaml", "mem", 7, 4),
    ("monitoring-node.yaml", "node-exporter", 2, 1),
    ("monitoring-node.yaml", "node-exporter", 3, 2),
    ("monitoring-node.yaml", "node-exporter", 7, 5),
    ("global-slo.yaml", "slo", 2, 0),
    ("global-slo.yaml", "slo", 3, 1),
    ("global-slo.yaml", "slo", 7, 3),
    ("cluster-kube-apiserver.yaml", "kube-apiserver", 2, 1),
    ("cluster-kube-apiserver.yaml", "kube-apiserver", 3, 2),
    ("cluster-kube-apiserver.yaml", "kube-apiserver", 7, 3),
];
