"""The `$JS.API` request handlers and the dispatcher that decodes, routes and answers them.

context (shared by all handlers) <- account, streams, messages, consumers (handlers) <- routes (the one table)
<- dispatch (queue, door checks, answer). Each module imports only to its left, so there is no circle.
"""
