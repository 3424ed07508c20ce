module github.com/tether-lb/tether

go 1.26
