with

source as (

    select * from {{ ref('demo_orders') }}

),

renamed as (

    select
        order_id,
        customer_id,
        ordered_at,
        toDate(ordered_at) as order_date,
        lower(status) as status,
        amount as order_total,
        status = 'completed' as is_completed

    from source

)

select * from renamed
