// The migrations are compiled in (`sqlx::migrate!`); rebuild when one is added.
fn main() {
    println!("cargo:rerun-if-changed=../infra/migrations");
}
