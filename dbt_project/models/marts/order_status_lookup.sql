{#
  A dictionary whose source is this warehouse itself: dbt-clickhouse writes the profile's user and
  password into SOURCE(CLICKHOUSE(...)), and the warehouse reads it back from inside the engine.
#}
{{
  config(
    materialized='dictionary',
    fields=[('status', 'String'), ('order_count', 'UInt64')],
    primary_key='status',
    layout='COMPLEX_KEY_HASHED()',
    lifetime='MIN 0 MAX 0',
    source_type='clickhouse',
  )
}}

select
    status,
    count() as order_count

from {{ ref('stg_demo__orders') }}

group by status
