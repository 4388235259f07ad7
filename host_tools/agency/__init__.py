"""The digital agency: customers' and operators' web app over the head-end's store, payments behind one
provider interface, message channels (SMS, e-mail, WhatsApp). See docs/agency.md."""
