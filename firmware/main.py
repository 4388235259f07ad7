# Entry point on the meter: build the app from the board and run the superloop.
import app
app.main()
