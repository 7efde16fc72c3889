"""The runtime: process machinery every layer may use and that knows nothing of stores.

The blocking API's event-loop thread (`portal`), waiting that works on any loop and from
any thread (`waiting`), life across ``os.fork()`` (`forks`), clean-up at exit
(`shutdown`), a database connection owned by one thread (`connection`), the clock stores
read (`clock`), warnings that point at the user's line (`user_warnings`) and what a
message may show of a URL (`masking`). Imports nothing of adatastore but `errors`.
"""
