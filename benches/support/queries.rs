//! Real dashboard queries (node-exporter and kubernetes-mixin style) and `match[]` selectors,
//! shared by the benchmarks, the bench tools and the fuzz seed corpus.
#![allow(dead_code)]

pub const DASHBOARD_QUERIES: &[&str] = &[
    // node-exporter mixin
    r#"sum by (instance) (rate(node_cpu_seconds_total{job="node",mode!="idle"}[5m]))"#,
    r#"1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{job="node", mode="idle", instance="10.0.0.1:9100"}[5m]))"#,
    r#"node_load1{job="node", instance="10.0.0.1:9100"} / count without (cpu) (count without (mode) (node_cpu_seconds_total{job="node", instance="10.0.0.1:9100"}))"#,
    r#"1 - (node_memory_MemAvailable_bytes{job="node", instance="10.0.0.1:9100"} / node_memory_MemTotal_bytes{job="node", instance="10.0.0.1:9100"})"#,
    r#"max without (device) (1 - node_filesystem_avail_bytes{job="node", fstype!="", mountpoint="/"} / node_filesystem_size_bytes{job="node", fstype!="", mountpoint="/"})"#,
    r#"rate(node_network_receive_bytes_total{job="node", instance="10.0.0.1:9100", device!="lo"}[5m]) * 8"#,
    r#"rate(node_disk_io_time_seconds_total{job="node", instance="10.0.0.1:9100", device=~"(/dev/)?(mmcblk.p.+|nvme.+|rbd.+|sd.+|vd.+|xvd.+|dm-.+|md.+|dasd.+)"}[5m])"#,
    r#"predict_linear(node_filesystem_avail_bytes{job="node", fstype!=""}[6h], 4 * 60 * 60) < 0"#,
    r#"count(count by (kernel_release) (node_uname_info{job="node"}))"#,
    // kubernetes-mixin
    r#"sum(namespace_cpu:kube_pod_container_resource_requests:sum{cluster="prod"}) / sum(kube_node_status_allocatable{job="kube-state-metrics", resource="cpu", cluster="prod"})"#,
    r#"sum by (namespace) (node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate{cluster="prod"})"#,
    r#"sum(container_memory_working_set_bytes{job="kubelet", metrics_path="/metrics/cadvisor", cluster="prod", namespace="default", container!="", image!=""}) by (pod)"#,
    r#"sum by (pod) (rate(container_network_receive_bytes_total{job="kubelet", metrics_path="/metrics/cadvisor", cluster="prod", namespace="default"}[5m]))"#,
    r#"histogram_quantile(0.99, sum by (le, verb) (rate(apiserver_request_duration_seconds_bucket{job="apiserver", verb=~"LIST|GET"}[5m])))"#,
    r#"sum by (code) (rate(apiserver_request_total{job="apiserver"}[5m])) / ignoring (code) group_left () sum(rate(apiserver_request_total{job="apiserver"}[5m]))"#,
    r#"kube_pod_container_status_restarts_total{job="kube-state-metrics", namespace=~"default|kube-system"} - kube_pod_container_status_restarts_total{job="kube-state-metrics", namespace=~"default|kube-system"} offset 10m >= 1"#,
    r#"sum(increase(container_cpu_cfs_throttled_periods_total{container!="", job="kubelet", metrics_path="/metrics/cadvisor"}[5m])) by (container, pod, namespace) / sum(increase(container_cpu_cfs_periods_total{job="kubelet", metrics_path="/metrics/cadvisor"}[5m])) by (container, pod, namespace) > (25 / 100)"#,
    r#"topk(10, sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="default", container!=""}[5m])))"#,
    // alerting / Grafana staples
    r#"absent(up{job="kube-state-metrics"} == 1)"#,
    r#"avg_over_time(up{job="node"}[1h:1m])"#,
    r#"label_replace(rate(http_requests_total{job="api"}[5m]), "service", "$1", "job", "(.*)")"#,
    r#"sum by (handler, code) (rate(prometheus_http_requests_total[1m]))"#,
    r#"1+1"#,
];

pub const MATCH_SELECTORS: &[&str] = &[
    r#"up"#,
    r#"{job="node"}"#,
    r#"node_cpu_seconds_total{instance="10.0.0.1:9100", mode!="idle"}"#,
    r#"{__name__=~"kube_pod_.+", namespace="default"}"#,
];
