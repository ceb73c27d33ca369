from django.urls import path

from . import views

urlpatterns = [
    path("", views.root),
    path("healthz", views.healthz),
    path("products", views.products),
]
