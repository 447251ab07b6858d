// Package monitoring holds the wallet API's Prometheus rules, Grafana
// dashboard and the kustomize directory that ships them to the cluster
// (k8s/monitoring). Its only Go code is the metrics contract; its tests check
// the files.
//
// rules.yml (plain Prometheus rule file) is the single source of the alerting
// and recording rules; prometheusrule.yaml is generated from it
// (go test ./k8s/monitoring/ -run TestPrometheusRuleGolden -update).
// rules_test.yml holds promtool unit tests for the alerts. dashboard.json is
// the Grafana dashboard, provisioned through a ConfigMap labelled
// grafana_dashboard: "1".
//
// It is not the instrumentation: the metrics themselves are defined by the
// API server; the tests here only hold the dashboard and the rules to the
// metrics contract (contract.go), which the server's /metrics must match
// (server/contract_test.go checks it).
package monitoring
