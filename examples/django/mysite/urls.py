from django.urls import path
from shop import views

urlpatterns = [
    path("orders/", views.create_order),
    path("orders/<int:order_id>/", views.order_detail),
    path("orders/<int:order_id>/receipt/", views.send_receipt),
    path("jobs/<str:job_id>/", views.job_status),
    path("restock/", views.restock_view),
    path("restock/<str:result_id>/", views.restock_status),
]
