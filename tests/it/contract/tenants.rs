//! The tenant store's contract: tenants (listed newest first), their API keys (found by
//! tenant and by digest) and their single-use portal links.

use std::sync::Arc;
use std::time::Duration;

use relay_core::Timestamp;
use relay_core::domain::{ApiKey, ApiKeyId, NewTenant, PageRequest, PortalLink, Tenant, TenantId, TenantInput};
use relay_core::ports::TenantStore;
use serde_json::json;

fn id(value: &str) -> TenantId {
    TenantId::parse(value).unwrap()
}

fn tenant(value: &str) -> Tenant {
    let input: TenantInput = serde_json::from_value(json!({"id": value, "name": format!("Tenant {value}")})).unwrap();
    Tenant::new(NewTenant::parse(input).unwrap(), Timestamp::now())
}

fn key(tenant: &str, name: &str) -> ApiKey {
    ApiKey::issue(id(tenant), name.into(), Timestamp::now()).key
}

/// Insert refuses an id in use; get, update and delete see exactly what was stored.
pub async fn insert_get_update_delete(store: Arc<dyn TenantStore>) {
    let mut acme = tenant("acme");
    acme.rate_limit_per_minute = Some(120);
    acme.max_webhooks = 7;
    assert!(store.insert(&acme).await.unwrap());
    let mut impostor = tenant("acme");
    impostor.name = "Impostor".into();
    assert!(!store.insert(&impostor).await.unwrap(), "an existing id is refused");
    assert_eq!(store.get(&acme.id).await.unwrap(), Some(acme.clone()), "the refused insert wrote nothing");
    assert_eq!(store.get(&id("globex")).await.unwrap(), None);

    let mut changed = acme.clone();
    changed.name = "Acme, renamed".into();
    changed.is_active = false;
    changed.rate_limit_per_minute = None;
    changed.max_webhooks = 9;
    changed.updated_at = Timestamp::now() + Duration::from_secs(1);
    assert!(store.update(&changed).await.unwrap());
    assert_eq!(store.get(&acme.id).await.unwrap(), Some(changed.clone()));

    let ghost = tenant("ghost");
    assert!(!store.update(&ghost).await.unwrap(), "update does not create");
    assert_eq!(store.get(&ghost.id).await.unwrap(), None);

    assert!(store.delete(&acme.id).await.unwrap());
    assert_eq!(store.get(&acme.id).await.unwrap(), None);
    assert!(!store.delete(&acme.id).await.unwrap());
    assert!(!store.update(&changed).await.unwrap(), "updating a deleted tenant must not recreate it");
    assert!(store.insert(&acme).await.unwrap(), "a deleted tenant's id is free again");
}

/// Newest first by `order` (not by insertion or id), only tenants (not their keys or links),
/// by cursor and offset.
pub async fn lists_newest_first_with_cursor_paging(store: Arc<dyn TenantStore>) {
    // Created in this order; inserted in another.
    let tenants: Vec<Tenant> = ["m", "c", "x", "a", "k"].iter().map(|t| tenant(t)).collect();
    for i in [2, 0, 4, 1, 3] {
        assert!(store.insert(&tenants[i]).await.unwrap());
    }
    store.insert_key(&key("m", "ci")).await.unwrap();
    let (link, _) = PortalLink::issue(id("x"), Duration::from_secs(600), Timestamp::now());
    store.insert_portal_link(&link).await.unwrap();
    let newest_first: Vec<TenantId> = tenants.iter().rev().map(|t| t.id.clone()).collect();

    let page = store.list(&PageRequest::default()).await.unwrap();
    assert_eq!(page.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), newest_first);
    assert_eq!(page.items[0], tenants[4], "listed as stored");
    assert_eq!(page.next_cursor, None);

    let mut seen = Vec::new();
    let mut request = PageRequest { limit: 2, ..PageRequest::default() };
    loop {
        let page = store.list(&request).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|t| t.id.clone()));
        let Some(cursor) = page.next_cursor else { break };
        request = PageRequest::parse(Some("2"), None, Some(&cursor), 500).unwrap();
    }
    assert_eq!(seen, newest_first);

    let page = store.list(&PageRequest { limit: 2, offset: 1, before: None }).await.unwrap();
    assert_eq!(page.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), newest_first[1..3]);
    assert!(page.next_cursor.is_some());

    // An update keeps a tenant's place.
    let mut renamed = tenants[0].clone();
    renamed.name = "renamed".into();
    renamed.updated_at = Timestamp::now();
    assert!(store.update(&renamed).await.unwrap());
    let page = store.list(&PageRequest::default()).await.unwrap();
    assert_eq!(page.items.last(), Some(&renamed));
}

/// Keys by tenant (oldest first) and by digest, touched, and deleted by their own tenant only.
pub async fn api_keys_by_tenant_and_digest(store: Arc<dyn TenantStore>) {
    for t in ["acme", "globex"] {
        store.insert(&tenant(t)).await.unwrap();
    }
    let k1 = key("acme", "first");
    let k2 = key("acme", "second");
    let k3 = key("globex", "only");
    for k in [&k1, &k2, &k3] {
        store.insert_key(k).await.unwrap();
    }
    assert_eq!(store.keys(&id("acme")).await.unwrap(), [k1.clone(), k2.clone()]);
    assert_eq!(store.keys(&id("globex")).await.unwrap(), std::slice::from_ref(&k3));
    assert!(store.keys(&id("initech")).await.unwrap().is_empty());
    assert_eq!(store.key_by_digest(&k2.digest).await.unwrap(), Some(k2.clone()));
    assert_eq!(store.key_by_digest(&k3.digest).await.unwrap(), Some(k3.clone()));
    assert_eq!(store.key_by_digest(&relay_core::auth::digest("no such key")).await.unwrap(), None);

    // Touched: last_used_at set, as seen both ways; an unknown key (or another tenant's) is
    // not created by a touch.
    assert_eq!(k1.last_used_at, None);
    let at = Timestamp::now() + Duration::from_secs(5);
    store.touch_key(&id("acme"), k1.id, at).await.unwrap();
    assert_eq!(store.keys(&id("acme")).await.unwrap()[0].last_used_at, Some(at));
    assert_eq!(store.key_by_digest(&k1.digest).await.unwrap().unwrap().last_used_at, Some(at));
    assert_eq!(store.key_by_digest(&k2.digest).await.unwrap().unwrap().last_used_at, None);
    let later = at + Duration::from_secs(60);
    store.touch_key(&id("acme"), k1.id, later).await.unwrap();
    assert_eq!(store.key_by_digest(&k1.digest).await.unwrap().unwrap().last_used_at, Some(later));
    store.touch_key(&id("acme"), ApiKeyId::new(), at).await.unwrap();
    store.touch_key(&id("globex"), k1.id, at).await.unwrap();
    assert_eq!(store.keys(&id("acme")).await.unwrap().len(), 2);
    assert_eq!(store.keys(&id("globex")).await.unwrap(), std::slice::from_ref(&k3));
    assert_eq!(store.key_by_digest(&k1.digest).await.unwrap().unwrap().last_used_at, Some(later));

    assert!(!store.delete_key(&id("globex"), k1.id).await.unwrap(), "another tenant's key");
    assert!(!store.delete_key(&id("acme"), ApiKeyId::new()).await.unwrap());
    assert!(store.delete_key(&id("acme"), k1.id).await.unwrap());
    assert!(!store.delete_key(&id("acme"), k1.id).await.unwrap(), "deleted once");
    assert_eq!(store.key_by_digest(&k1.digest).await.unwrap(), None);
    assert_eq!(store.keys(&id("acme")).await.unwrap(), std::slice::from_ref(&k2));
    assert_eq!(store.key_by_digest(&k2.digest).await.unwrap(), Some(k2));
    store.touch_key(&id("acme"), k1.id, at).await.unwrap();
    assert_eq!(store.key_by_digest(&k1.digest).await.unwrap(), None, "a touch does not bring a key back");
}

/// Deleting a tenant deletes every key of it (more than one transaction holds), and nothing
/// of another tenant.
pub async fn deleting_a_tenant_removes_its_keys(store: Arc<dyn TenantStore>) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    store.insert(&acme).await.unwrap();
    store.insert(&globex).await.unwrap();
    let keys: Vec<ApiKey> = (0..relay_core::domain::MAX_API_KEYS + 1).map(|n| key("acme", &format!("k{n}"))).collect();
    for k in &keys {
        store.insert_key(k).await.unwrap();
    }
    let kept = key("globex", "kept");
    store.insert_key(&kept).await.unwrap();
    assert_eq!(store.keys(&acme.id).await.unwrap().len(), keys.len());

    assert!(store.delete(&acme.id).await.unwrap());
    assert_eq!(store.get(&acme.id).await.unwrap(), None);
    assert!(store.keys(&acme.id).await.unwrap().is_empty());
    for k in [&keys[0], &keys[keys.len() / 2], &keys[keys.len() - 1]] {
        assert_eq!(store.key_by_digest(&k.digest).await.unwrap(), None, "{}", k.name);
    }
    assert_eq!(store.key_by_digest(&kept.digest).await.unwrap(), Some(kept.clone()));
    assert_eq!(store.keys(&globex.id).await.unwrap(), [kept]);
    assert_eq!(store.get(&globex.id).await.unwrap(), Some(globex));
    let listed = store.list(&PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["globex"]);
    assert!(!store.delete(&acme.id).await.unwrap());
}

/// A portal link is returned as stored by its first take, and by no other.
pub async fn a_portal_link_is_taken_once(store: Arc<dyn TenantStore>) {
    let (link, token) = PortalLink::issue(id("acme"), Duration::from_secs(900), Timestamp::now());
    let (other, _) = PortalLink::issue(id("globex"), Duration::from_secs(60), Timestamp::now());
    store.insert_portal_link(&link).await.unwrap();
    store.insert_portal_link(&other).await.unwrap();
    assert_eq!(link.digest, relay_core::auth::digest(&token));

    assert_eq!(store.take_portal_link(&link.digest).await.unwrap(), Some(link.clone()));
    assert_eq!(store.take_portal_link(&link.digest).await.unwrap(), None, "taken once");
    assert_eq!(store.take_portal_link(&relay_core::auth::digest("no such link")).await.unwrap(), None);
    assert_eq!(store.take_portal_link(&other.digest).await.unwrap(), Some(other));
}

/// Of concurrent takes of one link, exactly one gets it.
pub async fn concurrent_takes_of_a_link_have_one_winner(store: Arc<dyn TenantStore>) {
    for _ in 0..5 {
        let (link, _) = PortalLink::issue(id("acme"), Duration::from_secs(900), Timestamp::now());
        store.insert_portal_link(&link).await.unwrap();
        let mut takers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (store, digest) = (store.clone(), link.digest);
            takers.spawn(async move { store.take_portal_link(&digest).await.unwrap() });
        }
        let mut won = Vec::new();
        while let Some(taken) = takers.join_next().await {
            won.extend(taken.unwrap());
        }
        assert_eq!(won, std::slice::from_ref(&link), "exactly one take wins");
    }
}
