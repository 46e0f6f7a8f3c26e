"""One module per page (dash.register_page), each with its layout and its callbacks."""
