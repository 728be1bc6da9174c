//! The accounts, contact book, mailing lists and billing codes that deliveries draw
//! from, and the account requests that create and change them.
//!
//! Account events go to chain 0. The world owns the current members of each mailing
//! list: a list redefined mid-run changes the recipients of later deliveries only.

use rand::Rng;
use rand::seq::IndexedRandom;

use consign_schemas::events::{
    AccountOpened, CredentialChanged, Mailbox, MailingListDefined, Role,
};
use consign_schemas::{AccountId, Actor, ChainId, CommandId, Event, SystemComponent};

use super::catalog::{self, ACCOUNT_DOMAIN, DOMAINS, PEOPLE, ZONES};
use super::config::WorkloadConfig;
use crate::{AppendRequest, NewEvent};

/// The chain of every account event.
pub(super) const ACCOUNT_CHAIN: ChainId = ChainId::new(0);

/// Share of contacts stored with a display name. The rest are bare addresses.
const DISPLAY_NAME_PERCENT: u32 = 80;

#[derive(Debug)]
pub(super) struct Account {
    pub id: AccountId,
    pub role: Role,
    /// IANA zone the account holder types dates in.
    pub zone: &'static str,
}

#[derive(Debug)]
pub(super) struct MailingList {
    pub owner: AccountId,
    pub name: String,
    pub members: Vec<Mailbox>,
}

#[derive(Debug)]
pub(super) struct World {
    pub accounts: Vec<Account>,
    /// Indexes into `accounts` of the accounts with role sender, busiest first.
    pub senders: Vec<usize>,
    /// Every address that deliveries go to, each person at several domains.
    pub contacts: Vec<Mailbox>,
    pub lists: Vec<MailingList>,
    pub billing_codes: Vec<String>,
}

impl World {
    /// Builds the world and the requests that record it: one `AccountOpened` request
    /// per account, then one `MailingListDefined` request per list, in that order.
    pub(super) fn build(
        rng: &mut impl Rng,
        config: &WorkloadConfig,
    ) -> (World, Vec<AppendRequest>) {
        let contacts = build_contacts(rng);
        let billing_codes = (0..config.billing_codes)
            .map(catalog::billing_code)
            .collect();

        let mut accounts: Vec<Account> = Vec::new();
        let mut senders = Vec::new();
        let mut requests = Vec::new();
        for index in 0..config.accounts as usize {
            let role = match index {
                0 => Role::Admin,
                1 => Role::Billing,
                2 => Role::Auditor,
                _ => Role::Sender,
            };
            let account = Account {
                id: AccountId::from_bytes(catalog::uuid_bytes(rng)),
                role,
                zone: ZONES.choose(rng).copied().unwrap_or("UTC"),
            };
            if role == Role::Sender {
                senders.push(index);
            }

            // The operator's setup creates the first admin, who opens the other accounts.
            let actor = match accounts.first() {
                None => Actor::System(SystemComponent::Administration),
                Some(admin) => Actor::Account(admin.id),
            };
            let opened = open_account(rng, &account, index);
            requests.push(request(
                rng,
                ACCOUNT_CHAIN,
                actor,
                Event::AccountOpened(opened),
            ));
            accounts.push(account);
        }

        let mut world = World {
            accounts,
            senders,
            contacts,
            lists: Vec::new(),
            billing_codes,
        };
        for index in 0..config.mailing_lists as usize {
            let owner = world.accounts[world.senders[index % world.senders.len()]].id;
            let name = list_name(index);
            let member_count = rng.random_range(3..=12);
            let members = world
                .contacts
                .choose_multiple(rng, member_count)
                .cloned()
                .collect();
            world.lists.push(MailingList {
                owner,
                name,
                members,
            });
            requests.push(world.list_request(rng, index));
        }

        (world, requests)
    }

    /// Picks a sender, busiest first.
    pub(super) fn pick_sender(&self, rng: &mut impl Rng) -> &Account {
        let index = *catalog::pick_skewed(rng, &self.senders);
        &self.accounts[index]
    }

    /// Returns the indexes into `lists` of the lists owned by `owner`.
    pub(super) fn lists_of(&self, owner: AccountId) -> Vec<usize> {
        (0..self.lists.len())
            .filter(|&index| self.lists[index].owner == owner)
            .collect()
    }

    /// Builds the request of an account holder setting a new password.
    pub(super) fn change_credential(
        &self,
        rng: &mut impl Rng,
        account_index: usize,
    ) -> AppendRequest {
        let account = self.accounts[account_index].id;
        let changed = CredentialChanged {
            account,
            password_hash: catalog::argon2id_phc(rng),
        };
        request(
            rng,
            ACCOUNT_CHAIN,
            Actor::Account(account),
            Event::CredentialChanged(changed),
        )
    }

    /// Adds or removes one member of a random list and builds the request that records
    /// the new definition. Returns `None` when there are no lists.
    pub(super) fn redefine_list(&mut self, rng: &mut impl Rng) -> Option<AppendRequest> {
        if self.lists.is_empty() {
            return None;
        }
        let index = rng.random_range(0..self.lists.len());

        let list = &mut self.lists[index];
        if list.members.len() > 2 && rng.random_bool(0.5) {
            let removed = rng.random_range(0..list.members.len());
            list.members.remove(removed);
        } else if let Some(contact) = self.contacts.choose(rng) {
            // Re-adding a member already on the list changes nothing, as in the product.
            if !list.members.contains(contact) {
                list.members.push(contact.clone());
            }
        }

        Some(self.list_request(rng, index))
    }

    fn list_request(&self, rng: &mut impl Rng, index: usize) -> AppendRequest {
        let list = &self.lists[index];
        let defined = MailingListDefined {
            account: list.owner,
            name: list.name.clone(),
            members: list.members.clone(),
        };
        request(
            rng,
            ACCOUNT_CHAIN,
            Actor::Account(list.owner),
            Event::MailingListDefined(defined),
        )
    }
}

/// Builds a request of one event under a command id drawn from `rng`.
pub(super) fn request(
    rng: &mut impl Rng,
    chain: ChainId,
    actor: Actor,
    event: Event,
) -> AppendRequest {
    AppendRequest {
        chain,
        command: CommandId::from_bytes(catalog::uuid_bytes(rng)),
        idempotency_key: None,
        events: vec![NewEvent { actor, event }],
    }
}

fn open_account(rng: &mut impl Rng, account: &Account, index: usize) -> AccountOpened {
    let (display_name, local_part) = PEOPLE[index % PEOPLE.len()];
    // Logins stay unique when there are more accounts than people.
    let login = match index / PEOPLE.len() {
        0 => local_part.to_owned(),
        round => format!("{local_part}.{round}"),
    };
    AccountOpened {
        account: account.id,
        email: format!("{login}@{ACCOUNT_DOMAIN}"),
        login,
        display_name: display_name.to_owned(),
        role: account.role,
        password_hash: catalog::argon2id_phc(rng),
    }
}

/// Returns the name of the `index`-th list, unique even past the catalog's names.
fn list_name(index: usize) -> String {
    let names = catalog::MAILING_LIST_NAMES;
    match index / names.len() {
        0 => names[index].to_owned(),
        round => format!("{} ({})", names[index % names.len()], round + 1),
    }
}

/// Builds the contact book: every person at every example domain.
fn build_contacts(rng: &mut impl Rng) -> Vec<Mailbox> {
    let mut contacts = Vec::with_capacity(PEOPLE.len() * DOMAINS.len());
    for domain in DOMAINS {
        for (display_name, local_part) in PEOPLE {
            let display_name = rng
                .random_ratio(DISPLAY_NAME_PERCENT, 100)
                .then(|| (*display_name).to_owned());
            contacts.push(Mailbox {
                address: format!("{local_part}@{domain}"),
                display_name,
            });
        }
    }
    contacts
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use consign_schemas::EventKind;

    use super::*;

    fn build(config: &WorkloadConfig) -> (World, Vec<AppendRequest>) {
        World::build(&mut StdRng::seed_from_u64(config.seed), config)
    }

    #[test]
    fn build_assigns_every_role() {
        let (world, _) = build(&WorkloadConfig::default());
        let roles: Vec<Role> = world.accounts.iter().map(|account| account.role).collect();

        assert_eq!(
            roles,
            [
                Role::Admin,
                Role::Billing,
                Role::Auditor,
                Role::Sender,
                Role::Sender,
                Role::Sender,
                Role::Sender,
                Role::Sender,
            ]
        );
        assert_eq!(world.senders, [3, 4, 5, 6, 7]);
    }

    #[test]
    fn build_opens_accounts_before_lists() {
        let config = WorkloadConfig::default();
        let (world, requests) = build(&config);
        let kinds: Vec<EventKind> = requests.iter().map(|r| r.events[0].event.kind()).collect();

        assert_eq!(
            requests.len(),
            (config.accounts + config.mailing_lists) as usize
        );
        assert!(kinds[..8].iter().all(|&k| k == EventKind::AccountOpened));
        assert!(
            kinds[8..]
                .iter()
                .all(|&k| k == EventKind::MailingListDefined)
        );
        assert!(requests.iter().all(|r| r.chain == ACCOUNT_CHAIN));
        assert_eq!(world.lists.len(), 4);
    }

    #[test]
    fn build_gives_unique_logins_and_list_names() {
        let config = WorkloadConfig {
            accounts: 45,
            mailing_lists: 14,
            ..WorkloadConfig::default()
        };
        let (world, requests) = build(&config);
        let mut logins = std::collections::HashSet::new();
        for request in &requests {
            if let Event::AccountOpened(opened) = &request.events[0].event {
                assert!(logins.insert(opened.login.clone()), "{}", opened.login);
            }
        }
        let names: std::collections::HashSet<&str> =
            world.lists.iter().map(|list| list.name.as_str()).collect();

        assert_eq!(logins.len(), 45);
        assert_eq!(names.len(), 14);
    }

    #[test]
    fn redefine_list_changes_members_of_one_list() {
        let mut rng = StdRng::seed_from_u64(9);
        let (mut world, _) = World::build(&mut rng, &WorkloadConfig::default());
        let before: Vec<Vec<Mailbox>> = world.lists.iter().map(|l| l.members.clone()).collect();

        let request = world
            .redefine_list(&mut rng)
            .expect("the default world has lists");
        let Event::MailingListDefined(defined) = &request.events[0].event else {
            panic!(
                "expected MailingListDefined, got {:?}",
                request.events[0].event
            );
        };
        let changed: Vec<usize> = (0..before.len())
            .filter(|&i| before[i] != world.lists[i].members)
            .collect();

        assert!(changed.len() <= 1, "lists changed: {changed:?}");
        let list = world.lists.iter().find(|l| l.name == defined.name).unwrap();
        assert_eq!(list.members, defined.members);
    }
}
