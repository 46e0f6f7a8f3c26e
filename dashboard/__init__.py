"""Dashboard: a Dash web app with the event map, filters, event detail and fleet health."""
