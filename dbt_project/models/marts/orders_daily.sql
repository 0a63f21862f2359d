{{ config(engine='MergeTree()', order_by='order_date') }}

with

orders as (

    select * from {{ ref('stg_demo__orders') }}

),

daily as (

    select
        order_date,
        count() as order_count,
        countIf(is_completed) as completed_count,
        uniqExact(customer_id) as customer_count,
        sum(order_total) as revenue,
        sumIf(order_total, is_completed) as completed_revenue

    from orders
    group by order_date

)

select * from daily
