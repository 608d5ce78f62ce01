//! Every end-to-end test of etal, in one test binary (one link instead of one per file: the
//! cold `make test` spends its time linking): against real PostgreSQL, the real `etal` binary,
//! and at their wire protocols, a fake Stripe, a real SMTP server, a real browser. nextest runs
//! each test in a process of its own, as before; `e2e::<file>::<test>` names them.

mod fake_stripe;
mod graphql_common;
mod smtp_sink;

mod after_distribution_http;
mod archive_http;
mod audit_completeness;
mod back_office_browser;
mod back_office_http;
mod bank_details_http;
mod command_bus;
mod crash_outbox;
mod delivery_http;
mod directory_http;
mod fee_schedules_http;
mod fees_in_price_http;
mod fortnight;
mod global_order;
mod graphql_authz;
mod graphql_bad_input;
mod graphql_flow;
mod graphql_http_audit;
mod graphql_read;
mod graphql_subscriptions;
mod http;
mod invoices_http;
mod kept_states;
mod market_settings_http;
mod me_http;
mod members_only_http;
mod migration_keys;
mod money;
mod notifications_serve;
mod notifications_smtp;
mod one_commit_http;
mod operations_http;
mod order_flow;
mod order_periods_http;
mod postgres_restart;
mod projector;
mod read_your_writes_http;
mod recurring_sales;
mod refunds_outbox;
mod scale_out;
mod scheduler;
mod sealed_history;
mod stripe_http;
mod trainings;
mod webhooks_give_up;
mod webhooks_http;
mod weighing_extra_http;
