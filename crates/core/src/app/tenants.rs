use std::sync::Arc;

use crate::auth::Directory;
use crate::domain::{
    ApiKey, ApiKeyId, ApiKeyInput, IssuedKey, NewTenant, Page, PageRequest, PortalLink, PortalLinkInput, Tenant,
    TenantId, TenantInput, TenantPatch,
};
use crate::ports::{TenantStore, WebhookStore};
use crate::{Error, Result, Timestamp};

/// How many webhooks a tenant's deletion removes per page read.
const DELETE_PAGE: usize = 100;

/// Managing tenants, their API keys and their portal links (internal services, with a service
/// token). Changes take effect at once on this process and within [`crate::auth::DIRECTORY_TTL`]
/// on the others.
#[derive(Clone, Debug)]
pub struct Tenants {
    directory: Arc<Directory>,
    webhooks: Arc<dyn WebhookStore>,
}

/// A portal link as handed out: the token goes into the URL, and only its SHA-256 is kept.
#[derive(Debug, Clone)]
pub struct IssuedLink {
    pub token: String,
    pub expires_at: Timestamp,
}

impl Tenants {
    pub fn new(directory: Arc<Directory>, webhooks: Arc<dyn WebhookStore>) -> Self {
        Self { directory, webhooks }
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    fn store(&self) -> &dyn TenantStore {
        self.directory.store().as_ref()
    }

    /// 201 with the tenant; 409 when one with its id is stored. A tenant that existed only
    /// implicitly (named in `API_KEYS`) may be created: it is stored from then on.
    #[tracing::instrument(skip_all)]
    pub async fn create(&self, input: TenantInput) -> Result<Tenant> {
        let tenant = Tenant::new(NewTenant::parse(input)?, Timestamp::now());
        if !self.store().insert(&tenant).await? {
            return Err(Error::Conflict {
                code: "tenant_exists",
                message: format!("a tenant with id {:?} exists", tenant.id.as_str()),
            });
        }
        self.directory.forget(&tenant.id);
        tracing::info!(tenant = %tenant.id, "tenant created");
        Ok(tenant)
    }

    /// Stored tenants, newest first (implicit ones are not listed).
    pub async fn list(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        self.store().list(page).await
    }

    /// A stored tenant, or an implicit one; else 404.
    pub async fn get(&self, id: &str) -> Result<Tenant> {
        self.directory.read_tenant(&parse_id(id)?).await?.ok_or(Error::NotFound("tenant"))
    }

    /// Renames, enables or disables, or changes the limits of a tenant. An implicit tenant is
    /// stored by its first change.
    #[tracing::instrument(skip_all, fields(tenant = %id))]
    pub async fn update(&self, id: &str, input: TenantInput) -> Result<Tenant> {
        let patch = TenantPatch::parse(input)?;
        let id = parse_id(id)?;
        let now = Timestamp::now();
        let tenant = match self.store().get(&id).await? {
            Some(mut tenant) => {
                tenant.apply(patch, now);
                if !self.store().update(&tenant).await? {
                    return Err(Error::NotFound("tenant"));
                }
                tenant
            }
            None if self.directory.credentials().names(&id) => {
                let mut tenant = Tenant { created_at: now, order: uuid::Uuid::now_v7(), ..Tenant::implicit(id) };
                tenant.apply(patch, now);
                if !self.store().insert(&tenant).await? {
                    return Err(Error::Conflict {
                        code: "tenant_changed",
                        message: "the tenant was created meanwhile; send the change again".into(),
                    });
                }
                tenant
            }
            None => return Err(Error::NotFound("tenant")),
        };
        self.directory.forget(&tenant.id);
        tracing::info!(active = tenant.is_active, "tenant updated");
        Ok(tenant)
    }

    /// Disables the tenant, then removes its webhooks, then it and its keys. Its delivery log
    /// stays until the log's retention removes it. A tenant that is only implicit cannot be deleted here (its keys
    /// are in `API_KEYS`): 409.
    #[tracing::instrument(skip_all, fields(tenant = %id))]
    pub async fn delete(&self, id: &str) -> Result<()> {
        let id = parse_id(id)?;
        let Some(mut tenant) = self.store().get(&id).await? else {
            return Err(match self.directory.credentials().names(&id) {
                true => Error::Conflict {
                    code: "tenant_static",
                    message: "this tenant exists because API_KEYS names it: remove its keys there".into(),
                },
                false => Error::NotFound("tenant"),
            });
        };
        // Disabled first, so its keys are refused and its events too while its webhooks go
        // (a deletion cut short leaves a disabled tenant to delete again).
        if tenant.is_active {
            tenant.is_active = false;
            tenant.updated_at = Timestamp::now();
            self.store().update(&tenant).await?;
            self.directory.forget(&id);
        }
        loop {
            let page = PageRequest { limit: DELETE_PAGE, ..PageRequest::default() };
            let webhooks = self.webhooks.list(&id, &page).await?;
            for webhook in &webhooks.items {
                self.webhooks.delete(webhook.id).await?;
            }
            if webhooks.next_cursor.is_none() {
                break;
            }
        }
        // The tenant with its keys.
        self.store().delete(&id).await?;
        self.directory.forget(&id);
        tracing::info!("tenant deleted");
        Ok(())
    }

    /// A new key for the tenant, shown this once.
    pub async fn issue_key(&self, id: &str, input: ApiKeyInput) -> Result<IssuedKey> {
        let tenant = self.get(id).await?;
        let name = input.parse()?;
        if self.store().keys(&tenant.id).await?.len() >= crate::domain::MAX_API_KEYS {
            return Err(Error::validation(
                "name",
                format!("the tenant has {} keys, the most it may hold: revoke one first", crate::domain::MAX_API_KEYS),
            ));
        }
        let issued = ApiKey::issue(tenant.id.clone(), name, Timestamp::now());
        self.store().insert_key(&issued.key).await?;
        self.directory.forget(&tenant.id);
        tracing::info!(tenant = %tenant.id, key_id = %issued.key.id, "API key issued");
        Ok(issued)
    }

    pub async fn keys(&self, id: &str) -> Result<Vec<ApiKey>> {
        let tenant = self.get(id).await?;
        self.store().keys(&tenant.id).await
    }

    /// Revokes a key: refused at once here, within [`crate::auth::DIRECTORY_TTL`] elsewhere.
    pub async fn revoke_key(&self, id: &str, key_id: &str) -> Result<()> {
        let tenant = self.get(id).await?;
        let key_id = ApiKeyId::parse(key_id)?;
        if !self.store().delete_key(&tenant.id, key_id).await? {
            return Err(Error::NotFound("API key"));
        }
        self.directory.forget(&tenant.id);
        tracing::info!(tenant = %tenant.id, key_id = %key_id, "API key revoked");
        Ok(())
    }

    /// A single-use link signing its holder into the dashboard as the tenant.
    pub async fn portal_link(&self, id: &str, input: PortalLinkInput) -> Result<IssuedLink> {
        let tenant = self.get(id).await?;
        let ttl = input.parse()?;
        if !tenant.is_active {
            return Err(Error::Conflict { code: "tenant_disabled", message: "the tenant is disabled".into() });
        }
        let (link, token) = PortalLink::issue(tenant.id.clone(), ttl, Timestamp::now());
        self.store().insert_portal_link(&link).await?;
        tracing::info!(tenant = %tenant.id, "portal link issued");
        Ok(IssuedLink { token, expires_at: link.expires_at })
    }

    /// Uses a portal link up: the tenant it signs in as, when it was unused, unexpired and its
    /// tenant active; `None` otherwise (a second use included).
    pub async fn redeem(&self, token: &str) -> Result<Option<TenantId>> {
        let digest = crate::auth::digest(token);
        let Some(link) = self.store().take_portal_link(&digest).await? else { return Ok(None) };
        if link.expires_at <= Timestamp::now() {
            return Ok(None);
        }
        let active = self.directory.tenant(&link.tenant).await?.is_some_and(|t| t.is_active);
        Ok(active.then_some(link.tenant))
    }
}

/// A tenant id from a path: anything that cannot be one is "not found".
fn parse_id(id: &str) -> Result<TenantId> {
    TenantId::parse(id).map_err(|_| Error::NotFound("tenant"))
}
