-- Catalog search that finds "green mug" in "Mug, green" and "gorra" in a product whose owner
-- added it as a keyword: trigram similarity (pg_trgm) over sku, name and keywords, and the
-- catalog's language on the agent, so the model can translate a customer's words into it.

-- pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it. Supabase
-- keeps extensions in the `extensions` schema (on its default search_path); elsewhere it goes
-- to the default creation schema (`public`). An existing installation is left where it is.
do $$
begin
    if not exists (select 1 from pg_extension where extname = 'pg_trgm') then
        if exists (select 1 from pg_namespace where nspname = 'extensions') then
            execute 'create extension if not exists pg_trgm with schema extensions';
        else
            execute 'create extension if not exists pg_trgm';
        end if;
    end if;
end
$$;

-- Synonyms and other languages' words an owner adds to a product ("taza", "cup").
alter table agent_orders.products
    add column keywords text[] not null default '{}'
        check (cardinality(keywords) <= 20);

-- One lower-case text per product for the trigram index. array_to_string is only STABLE in
-- general (element output functions); for text[] it cannot change, hence IMMUTABLE here.
create function agent_orders.product_search_text(sku text, name text, keywords text[])
returns text language sql immutable parallel safe
return lower(sku || ' ' || name || ' ' || array_to_string(keywords, ' '));

alter table agent_orders.products
    add column search_text text not null
        generated always as (agent_orders.product_search_text(sku, name, keywords)) stored;

-- The operator class is looked up on the search_path, where the extension is (see above).
do $$
declare
    ext_schema text := (select n.nspname from pg_extension e
                        join pg_namespace n on n.oid = e.extnamespace
                        where e.extname = 'pg_trgm');
begin
    execute format(
        'create index products_search_trgm_idx on agent_orders.products'
        ' using gin (search_text %I.gin_trgm_ops)', ext_schema);
end
$$;

-- Every word of every catalog (3 characters or more, no digits), for correcting a customer's typos
-- against a short list instead of comparing the query with every product. Words are added
-- as products are written and never removed: a stale word costs one search that finds
-- nothing more.
create table agent_orders.product_words (
    agent_id uuid not null references agent_orders.agents (id) on delete cascade,
    word text not null,
    primary key (agent_id, word)
);
alter table agent_orders.product_words enable row level security;

create function agent_orders.add_product_words() returns trigger
language plpgsql set search_path = pg_catalog, agent_orders as $$
begin
    insert into agent_orders.product_words (agent_id, word)
    select distinct new.agent_id, w
    from regexp_split_to_table(new.search_text, '[][[:space:][:punct:]]+') as w
    where length(w) >= 3 and w !~ '[0-9]'
    on conflict do nothing;
    return null;
end
$$;
create trigger products_words after insert or update of sku, name, keywords
    on agent_orders.products for each row execute function agent_orders.add_product_words();
insert into agent_orders.product_words (agent_id, word)
select distinct agent_id, w
from agent_orders.products, regexp_split_to_table(search_text, '[][[:space:][:punct:]]+') as w
where length(w) >= 3 and w !~ '[0-9]'
on conflict do nothing;

do $$
declare
    ext_schema text := (select n.nspname from pg_extension e
                        join pg_namespace n on n.oid = e.extnamespace
                        where e.extname = 'pg_trgm');
begin
    execute format(
        'create index product_words_trgm_idx on agent_orders.product_words'
        ' using gin (word %I.gin_trgm_ops)', ext_schema);
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        execute 'create policy product_words_owner on agent_orders.product_words for select
                 using (exists (select 1 from agent_orders.agents a
                                where a.id = agent_id and a.owner_id = auth.uid()))';
    end if;
end
$$;

-- The catalog's language (BCP 47, e.g. "en", "es", "pt-BR"), told to the model.
alter table agent_orders.agents
    add column language text not null default 'en'
        check (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$');
