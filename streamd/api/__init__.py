"""The `$JS.API` request handlers and the dispatcher that decodes, routes and answers them."""
