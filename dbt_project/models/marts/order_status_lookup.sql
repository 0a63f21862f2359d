{#
  A dictionary whose source is this warehouse itself: dbt-clickhouse writes the profile's user into
  SOURCE(CLICKHOUSE(...)) and the warehouse reads it back from inside the engine. The password is
  left out (connection_overrides): the CREATE arrived authenticated, and a password in the DDL
  would land in dbt's logs. (The warehouse also accepts and strips the platform's own password.)
#}
{{
  config(
    materialized='dictionary',
    fields=[('status', 'String'), ('order_count', 'UInt64')],
    primary_key='status',
    layout='COMPLEX_KEY_HASHED()',
    lifetime='MIN 0 MAX 0',
    source_type='clickhouse',
    connection_overrides={'password': ''},
  )
}}

select
    status,
    count() as order_count

from {{ ref('stg_demo__orders') }}

group by status
